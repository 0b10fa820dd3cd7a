"""Slice models for vertebral fracture detection.

Every model maps ``(B, C, H, W)`` float input (``H, W`` divisible by 32) to
:class:`~vertebral_fracture.models.base.output.SliceLogits` and offers ``predict_proba`` and
``fracture_probability`` (see :class:`~vertebral_fracture.models.base.output.SliceModel`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import nn

from vertebral_fracture.models.base import (
    CLASS_HEAD_DROPOUT,
    AttentionGate,
    SliceLogits,
    SliceModel,
)
from vertebral_fracture.models.baseline import SliceClassifier
from vertebral_fracture.models.encoders import ENCODERS, EncoderName, build_encoder
from vertebral_fracture.models.multitask import AttentionUNetMultiTask

ARCHITECTURES = ("multitask", "baseline", "smp_unet")


def build_model(
    architecture: Literal["multitask", "baseline", "smp_unet"],
    *,
    encoder: EncoderName = "resnet18",
    in_channels: int = 1,
    dropout: float = CLASS_HEAD_DROPOUT,
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    attention_gates: bool = True,
    deep_supervision: bool = False,
    pretrained_weights: str | Path | None = None,
) -> nn.Module:
    """Build a slice model by name.

    Args:
        architecture: ``"multitask"`` (:class:`AttentionUNetMultiTask`) or ``"baseline"``
            (:class:`SliceClassifier`, classification only; ``decoder_channels`` is not used),
            or ``"smp_unet"``, the benchmark's off-the-shelf peer
            (:class:`~vertebral_fracture.models.peer.SmpUnetPeer`; needs the ``[bench]`` extra,
            imported only then; ``decoder_channels`` is SMP's default).
        encoder: ``"resnet18"`` or ``"efficientnet_b0"``.
        in_channels: input channels ``C``.
        dropout: dropout probability before the classification FC, in ``[0, 1)``.
        decoder_channels: channels of the five decoder stages (multitask only).
        attention_gates: gate the decoder's skips (multitask only; ``False`` for ablations).
        deep_supervision: auxiliary segmentation heads on coarser decoder stages (multitask
            only).
        pretrained_weights: optional path of a local torchvision state_dict for the encoder.

    Raises:
        ValueError: unknown architecture or encoder, or invalid hyper-parameters.
        ImportError: ``"smp_unet"`` without segmentation_models_pytorch installed.
        FileNotFoundError: ``pretrained_weights`` does not exist.
    """
    if architecture == "multitask":
        return AttentionUNetMultiTask(
            encoder=encoder,
            in_channels=in_channels,
            dropout=dropout,
            decoder_channels=tuple(decoder_channels),
            attention_gates=attention_gates,
            deep_supervision=deep_supervision,
            pretrained_weights=pretrained_weights,
        )
    if architecture == "baseline":
        return SliceClassifier(
            encoder=encoder,
            in_channels=in_channels,
            dropout=dropout,
            pretrained_weights=pretrained_weights,
        )
    if architecture == "smp_unet":
        from vertebral_fracture.models.peer import SmpUnetPeer  # smp is imported lazily

        return SmpUnetPeer(
            encoder=encoder,
            in_channels=in_channels,
            dropout=dropout,
            pretrained_weights=pretrained_weights,
        )
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")


__all__ = [
    "ARCHITECTURES",
    "ENCODERS",
    "AttentionGate",
    "AttentionUNetMultiTask",
    "SliceClassifier",
    "SliceLogits",
    "SliceModel",
    "build_encoder",
    "build_model",
]
