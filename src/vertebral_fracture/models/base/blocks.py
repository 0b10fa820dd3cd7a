"""Convolutional building blocks shared by the decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vertebral_fracture.models.base.attention import AttentionGate


class Conv2dBNReLU(nn.Sequential):
    """3x3 convolution (no bias) -> BatchNorm -> ReLU; keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class AttentionDecoderBlock(nn.Module):
    """One U-Net decoder stage: upsample, gate the skip with attention, concat, two conv-BN-ReLU.

    The gating signal is the incoming (coarser) decoder feature before upsampling, as in
    Attention U-Net (Oktay et al. 2018, arXiv:1804.03999). With ``skip_channels=0`` the block has
    no skip connection and no gate: it only upsamples x2 and applies the two convolutions (used for
    the last stage that restores the input resolution). With ``attention_gate=False`` the skip is
    concatenated as it is (a plain U-Net stage, for ablations).

    Args:
        in_channels: channels of the incoming decoder feature.
        skip_channels: channels of the encoder skip feature, or 0 for no skip.
        out_channels: channels produced by the block.
        attention_gate: filter the skip with an :class:`AttentionGate` before concatenation.

    Shapes:
        x: ``(B, in_channels, h, w)``; skip: ``(B, skip_channels, Hs, Ws)`` or ``None``.
        Returns ``(y, alpha)``: ``y`` is ``(B, out_channels, Hs, Ws)`` (``(2h, 2w)`` without skip),
        ``alpha`` is the ``(B, 1, Hs, Ws)`` attention map, or ``None`` without a gate.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        attention_gate: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or skip_channels < 0:
            raise ValueError(
                "in_channels and out_channels must be >= 1 and skip_channels >= 0, got "
                f"{in_channels}, {out_channels}, {skip_channels}"
            )
        self.attention = (
            AttentionGate(
                gate_channels=in_channels,
                skip_channels=skip_channels,
                inter_channels=max(skip_channels // 2, 1),
            )
            if skip_channels and attention_gate
            else None
        )
        self.skip_channels = skip_channels
        self.conv1 = Conv2dBNReLU(in_channels + skip_channels, out_channels)
        self.conv2 = Conv2dBNReLU(out_channels, out_channels)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if (skip is None) != (self.skip_channels == 0):
            raise ValueError("skip must be given exactly when the block has skip_channels > 0")
        alpha = None
        if skip is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        else:
            if self.attention is not None:
                skip, alpha = self.attention(x, skip)
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x)), alpha
