"""Building blocks shared by every architecture."""

from vertebral_fracture.models.base.attention import AttentionGate
from vertebral_fracture.models.base.blocks import AttentionDecoderBlock, Conv2dBNReLU
from vertebral_fracture.models.base.heads import ClassificationHead, SegmentationHead
from vertebral_fracture.models.base.output import SliceLogits, SliceModel

__all__ = [
    "AttentionDecoderBlock",
    "AttentionGate",
    "ClassificationHead",
    "Conv2dBNReLU",
    "SegmentationHead",
    "SliceLogits",
    "SliceModel",
]
