"""Building blocks shared by every architecture."""

from vertebral_fracture.models.base.attention import AttentionGate
from vertebral_fracture.models.base.blocks import AttentionDecoderBlock, Conv2dBNReLU
from vertebral_fracture.models.base.heads import (
    CLASS_HEAD_DROPOUT,
    ClassificationHead,
    SegmentationHead,
)
from vertebral_fracture.models.base.output import SliceLogits, SliceModel

__all__ = [
    "CLASS_HEAD_DROPOUT",
    "AttentionDecoderBlock",
    "AttentionGate",
    "ClassificationHead",
    "Conv2dBNReLU",
    "SegmentationHead",
    "SliceLogits",
    "SliceModel",
]
