"""Model output container and the probability conventions shared by every slice model."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class SliceLogits(NamedTuple):
    """Raw (pre-sigmoid) outputs of a slice model.

    Attributes:
        class_logit: ``(B,)`` slice-level fracture logit.
        seg_logit: ``(B, 1, H, W)`` pixel-level fracture logits at input resolution, or ``None``
            for classification-only models.
        aux_seg_logits: deep-supervision logits of coarser decoder stages, finest first, each
            ``(B, 1, H / 2**k, W / 2**k)``; only in training mode of a model built with deep
            supervision, else empty.
    """

    class_logit: torch.Tensor
    seg_logit: torch.Tensor | None
    aux_seg_logits: tuple[torch.Tensor, ...] = ()


class SliceModel(nn.Module):
    """Base class: input validation and logit -> probability conversion for every slice model.

    Subclasses set ``in_channels`` and implement :meth:`forward` returning :class:`SliceLogits`.
    Inputs are ``(B, C, H, W)`` float tensors with ``C == in_channels`` and ``H, W`` divisible by
    :attr:`input_divisor` (the encoder's output stride).

    :meth:`predict_proba` and :meth:`fracture_probability` neither switch to ``eval()`` nor disable
    autograd: wrap them in ``model.eval()`` and ``torch.inference_mode()`` for inference.
    """

    input_divisor = 32

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, H, W)``, ``H, W % 32 == 0``."""
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        _, channels, height, width = x.shape
        if channels != self.in_channels:
            raise ValueError(
                f"model was built with in_channels={self.in_channels}, got input with {channels}"
            )
        if height % self.input_divisor or width % self.input_divisor:
            raise ValueError(
                f"input height and width must be divisible by {self.input_divisor}, "
                f"got {height}x{width}"
            )

    def predict_proba(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(p_class (B,), p_seg (B, 1, H, W) or None)``: sigmoids of the logits."""
        logits = self(x)
        p_seg = None if logits.seg_logit is None else torch.sigmoid(logits.seg_logit)
        return torch.sigmoid(logits.class_logit), p_seg

    def fracture_probability(self, x: torch.Tensor) -> torch.Tensor:
        """Return a ``(B, 1, H, W)`` fracture probability map in ``[0, 1]``.

        With a segmentation head this is ``P_class * P_seg`` (the slice-level probability gates
        the pixel map); without one, ``P_class`` is painted uniformly over the whole slice.
        """
        p_class, p_seg = self.predict_proba(x)
        p_class = p_class[:, None, None, None]
        if p_seg is None:
            batch, _, height, width = x.shape
            return p_class.expand(batch, 1, height, width).contiguous()
        return p_class * p_seg
