"""Additive attention gate of Attention U-Net."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: A new gate's logit offset: sigmoid(2) = 0.88, so the gate starts nearly open, passing the
#: skip features as a plain U-Net does, and learns where to close; the carry bias of highway
#: networks (Srivastava et al., "Training Very Deep Networks", NeurIPS 2015). Offset 0 halves
#: every skip at the start, and in short trainings the ungated ablation led (benchmarks/README.md).
OPEN_GATE_LOGIT = 2.0


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al., "Attention U-Net: Learning Where to Look for the
    Pancreas", MIDL 2018, arXiv:1804.03999, Fig. 2).

    ``alpha = sigmoid(psi(ReLU(W_g g + W_x x)))`` where ``W_g``, ``W_x`` and ``psi`` are 1x1
    convolutions followed by batch norm. ``W_g g`` is computed at the gating signal's (coarser)
    resolution and bilinearly resampled to the skip feature's size, so ``alpha`` lives on the
    skip grid and the output is ``alpha * x``. ``psi``'s batch norm starts with offset
    ``OPEN_GATE_LOGIT``: the gate starts nearly open (``reset_parameters``).

    Args:
        gate_channels: channels of the gating signal ``g`` (the coarser decoder feature).
        skip_channels: channels of the skip feature ``x`` (encoder feature).
        inter_channels: channels of the intermediate space ``W_g g + W_x x``.

    Shapes:
        g: ``(B, gate_channels, Hg, Wg)``; x: ``(B, skip_channels, Hx, Wx)``.
        Returns ``(alpha * x, alpha)`` with shapes ``(B, skip_channels, Hx, Wx)`` and
        ``(B, 1, Hx, Wx)``, ``alpha`` in ``[0, 1]``.
    """

    def __init__(self, *, gate_channels: int, skip_channels: int, inter_channels: int) -> None:
        super().__init__()
        for name, value in (
            ("gate_channels", gate_channels),
            ("skip_channels", skip_channels),
            ("inter_channels", inter_channels),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.w_g = nn.Sequential(
            nn.Conv2d(gate_channels, inter_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(inter_channels),
        )
        self.w_x = nn.Sequential(
            nn.Conv2d(skip_channels, inter_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(inter_channels),
        )
        self.psi = nn.Sequential(
            nn.Conv2d(inter_channels, 1, kernel_size=1, bias=False),
            nn.BatchNorm2d(1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Open the gate: ``psi``'s batch-norm offset to ``OPEN_GATE_LOGIT``."""
        nn.init.constant_(self.psi[1].bias, OPEN_GATE_LOGIT)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = self.w_g(g)
        if gate.shape[-2:] != x.shape[-2:]:
            gate = F.interpolate(gate, size=x.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(gate + self.w_x(x))))
        return alpha * x, alpha
