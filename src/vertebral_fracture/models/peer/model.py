"""The model a practitioner would pick instead of ours: ``smp.Unet`` with an auxiliary class head.

``segmentation_models_pytorch`` (SMP) is an optional dependency (``pip install -e .[bench]``),
imported only when a peer is built, so the package works without it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vertebral_fracture.models.base import SliceLogits, SliceModel
from vertebral_fracture.models.base.heads import CLASS_HEAD_DROPOUT

SMP_INSTALL_HINT = "the smp_unet peer needs segmentation_models_pytorch: pip install -e '.[bench]'"


def _smp():
    """Import segmentation_models_pytorch lazily, with an actionable error when it is missing."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(SMP_INSTALL_HINT) from exc
    return smp


class SmpUnetPeer(SliceModel):
    """``smp.Unet(encoder, classes=1, aux_params={"classes": 1, "dropout": dropout})``.

    A plain U-Net (no attention gates) on SMP's ResNet encoder, randomly initialised
    (``encoder_weights=None``: nothing is downloaded), with SMP's auxiliary classification
    head on the deepest encoder feature. Wrapped to the project's contract so the training
    loop, inference and fusion treat it exactly like the project's own models.

    Args:
        encoder: SMP encoder name, e.g. ``"resnet18"`` (same depth as ours).
        in_channels: input channels ``C``.
        dropout: dropout probability of the auxiliary classification head, in ``[0, 1)``.
        pretrained_weights: not supported (must be ``None``): the benchmark trains from scratch.

    Shapes:
        ``forward``: ``(B, C, H, W)`` with ``H, W`` divisible by 32 -> :class:`SliceLogits` with
        ``class_logit (B,)`` and ``seg_logit (B, 1, H, W)``; :meth:`fracture_probability` is
        ``P_class * P_seg`` as for the multi-task model.
    """

    def __init__(
        self,
        *,
        encoder: str = "resnet18",
        in_channels: int = 1,
        dropout: float = CLASS_HEAD_DROPOUT,
        pretrained_weights: str | Path | None = None,
    ) -> None:
        super().__init__(in_channels)
        if pretrained_weights is not None:
            raise ValueError(
                "the smp_unet peer is trained from scratch; pretrained_weights must be None"
            )
        self.net = _smp().Unet(
            encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=1,
            aux_params={"classes": 1, "dropout": dropout},
        )

    def forward(self, x: torch.Tensor) -> SliceLogits:
        self.check_input(x)
        seg_logit, class_logit = self.net(x)
        return SliceLogits(class_logit=class_logit[:, 0], seg_logit=seg_logit)
