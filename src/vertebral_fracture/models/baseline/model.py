"""Thesis baseline: slice-level fracture classifier without segmentation."""

from __future__ import annotations

from pathlib import Path

import torch

from vertebral_fracture.models.base import ClassificationHead, SliceLogits, SliceModel
from vertebral_fracture.models.base.heads import CLASS_HEAD_DROPOUT
from vertebral_fracture.models.encoders import EncoderName, build_encoder


class SliceClassifier(SliceModel):
    """Encoder -> global average pooling -> Dropout(p=dropout) -> Linear -> one slice logit.

    With ``encoder="resnet18"`` (default) this is the thesis baseline: a torchvision ResNet-18
    (He et al. 2016, arXiv:1512.03385) slice classifier, built on the same encoder code path as
    :class:`~vertebral_fracture.models.multitask.AttentionUNetMultiTask`.

    Args:
        encoder: ``"resnet18"`` or ``"efficientnet_b0"``.
        in_channels: input channels ``C``.
        dropout: dropout probability before the FC, in ``[0, 1)``.
        pretrained_weights: optional local torchvision state_dict for the encoder.

    Shapes:
        ``forward``: ``(B, C, H, W)`` with ``H, W`` divisible by 32 -> :class:`SliceLogits` with
        ``class_logit (B,)`` and ``seg_logit=None``; :meth:`fracture_probability` paints
        ``P_class`` uniformly over the slice.
    """

    def __init__(
        self,
        *,
        encoder: EncoderName = "resnet18",
        in_channels: int = 1,
        dropout: float = CLASS_HEAD_DROPOUT,
        pretrained_weights: str | Path | None = None,
    ) -> None:
        super().__init__(in_channels)
        self.encoder = build_encoder(
            encoder, in_channels=in_channels, pretrained_weights=pretrained_weights
        )
        self.classification_head = ClassificationHead(
            self.encoder.out_channels[-1], dropout=dropout
        )

    def forward(self, x: torch.Tensor) -> SliceLogits:
        self.check_input(x)
        return SliceLogits(
            class_logit=self.classification_head(self.encoder(x)[-1]), seg_logit=None
        )
