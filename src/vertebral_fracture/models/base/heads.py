"""Output heads: pixel segmentation logits and slice classification logit."""

from __future__ import annotations

import math

import torch
from torch import nn


class SegmentationHead(nn.Conv2d):
    """3x3 convolution to one logit channel, bias initialised to a foreground prior.

    Fracture pixels are rare, so with a zero bias every pixel would start at ``P_seg = 0.5`` and
    the background would dominate the first updates with large false-positive gradients. Setting
    ``bias = -log((1 - prior) / prior)`` starts every pixel at ``P_seg = prior`` (Lin et al.,
    "Focal Loss for Dense Object Detection", ICCV 2017, Sec. 4.1 "Initialization").

    Shapes: ``(B, in_channels, H, W) -> (B, 1, H, W)``.
    """

    def __init__(self, in_channels: int, *, prior: float = 0.01) -> None:
        if not 0.0 < prior < 1.0:
            raise ValueError(f"prior must be in (0, 1), got {prior}")
        super().__init__(in_channels, 1, kernel_size=3, padding=1)
        nn.init.normal_(self.weight, std=0.01)
        nn.init.constant_(self.bias, -math.log((1.0 - prior) / prior))


#: Dropout before the classification FC, as the method specifies (the one default of it).
CLASS_HEAD_DROPOUT = 0.2


class ClassificationHead(nn.Sequential):
    """Global average pooling -> Dropout(p) -> Linear to one logit (dropout before the FC).

    Shapes: ``(B, in_channels, h, w) -> (B,)``.
    """

    def __init__(self, in_channels: int, *, dropout: float = CLASS_HEAD_DROPOUT) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(p=dropout),
            nn.Linear(in_channels, 1),
        )
        nn.init.normal_(self[-1].weight, std=0.01)
        nn.init.zeros_(self[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)
