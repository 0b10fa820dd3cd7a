"""Y-shaped multi-task model: attention U-Net decoder + slice classification branch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vertebral_fracture.models.base import (
    AttentionDecoderBlock,
    AttentionGate,
    ClassificationHead,
    SegmentationHead,
    SliceLogits,
    SliceModel,
)
from vertebral_fracture.models.base.heads import CLASS_HEAD_DROPOUT
from vertebral_fracture.models.encoders import EncoderName, build_encoder


class AttentionUNetMultiTask(SliceModel):
    """Shared encoder with two branches (a "Y"):

    * Branch 1, segmentation: U-Net decoder (Ronneberger et al. 2015, arXiv:1505.04597) whose
      four skip junctions are each filtered by an additive attention gate (Oktay et al. 2018,
      arXiv:1804.03999), a fifth decoder stage back to input resolution, and a 1-channel
      segmentation head (logits, bias initialised to a 1% foreground prior).
    * Branch 2, classification: the deepest encoder feature -> global average pooling ->
      Dropout(p=dropout) -> Linear -> one slice logit.

    Deep supervision (optional, as in Attention U-Net, after Lee et al. 2015, arXiv:1409.5185):
    1-channel heads on the decoder stages at ``H/2``, ``H/4`` and ``H/8`` give auxiliary logits
    during training, so the coarse features that gate the skips are pushed to be discriminative
    themselves; inference uses the full-resolution head only.

    Args:
        encoder: ``"resnet18"`` or ``"efficientnet_b0"`` (see :func:`build_encoder`).
        in_channels: input channels ``C`` (e.g. 1 for a CT slice, 3 for a 2.5D stack or windows).
        dropout: dropout probability before the classification FC, in ``[0, 1)``.
        decoder_channels: output channels of the five decoder stages, coarse to fine.
        attention_gates: gate the skips (``False`` gives a plain U-Net decoder, for ablations).
        deep_supervision: add the auxiliary heads (training-mode output ``aux_seg_logits``).
        pretrained_weights: optional local torchvision state_dict for the encoder.

    Shapes:
        ``forward``: ``(B, C, H, W)`` with ``H, W`` divisible by 32 -> :class:`SliceLogits` with
        ``class_logit (B,)``, ``seg_logit (B, 1, H, W)`` and, when training with deep
        supervision, ``aux_seg_logits`` ``(B, 1, H/2, W/2)``, ``(B, 1, H/4, W/4)``,
        ``(B, 1, H/8, W/8)``.

    After every forward, :attr:`attention_maps` holds the detached attention coefficients of the
    four gates, coarse to fine: ``(B, 1, H/16, W/16)``, ``(B, 1, H/8, W/8)``, ``(B, 1, H/4, W/4)``,
    ``(B, 1, H/2, W/2)``, each in ``[0, 1]`` (empty without gates).
    """

    #: decoder stages (coarse to fine, of five) that get an auxiliary deep-supervision head
    aux_stages = (3, 2, 1)

    def __init__(
        self,
        *,
        encoder: EncoderName = "resnet18",
        in_channels: int = 1,
        dropout: float = CLASS_HEAD_DROPOUT,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        attention_gates: bool = True,
        deep_supervision: bool = False,
        pretrained_weights: str | Path | None = None,
    ) -> None:
        super().__init__(in_channels)
        self.encoder = build_encoder(
            encoder, in_channels=in_channels, pretrained_weights=pretrained_weights
        )
        stages = len(self.encoder.out_channels)
        if len(decoder_channels) != stages or any(c < 1 for c in decoder_channels):
            raise ValueError(
                f"decoder_channels must be {stages} positive ints (one per decoder stage), "
                f"got {decoder_channels}"
            )
        # Deepest feature first; the finest stage (after the stride-2 skip) has no skip.
        skips = list(reversed(self.encoder.out_channels[:-1])) + [0]
        inputs = [self.encoder.out_channels[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            AttentionDecoderBlock(
                in_channels=i, skip_channels=s, out_channels=o, attention_gate=attention_gates
            )
            for i, s, o in zip(inputs, skips, decoder_channels, strict=True)
        )
        self.segmentation_head = SegmentationHead(decoder_channels[-1], prior=0.01)
        self.aux_heads = nn.ModuleDict(
            {
                str(stage): SegmentationHead(decoder_channels[stage], prior=0.01)
                for stage in (self.aux_stages if deep_supervision else ())
            }
        )
        self.classification_head = ClassificationHead(
            self.encoder.out_channels[-1], dropout=dropout
        )
        self.attention_maps: tuple[torch.Tensor, ...] = ()
        self._init_decoder()

    def _init_decoder(self) -> None:
        """Kaiming (fan_out) convs and unit/zero BatchNorm, as torchvision inits its encoders."""
        for module in self.decoder.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.decoder.modules():
            if isinstance(module, AttentionGate):  # its own init, which the loop above undid
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> SliceLogits:
        self.check_input(x)
        features = self.encoder(x)
        skips = [*reversed(features[:-1]), None]
        y = features[-1]
        alphas, stage_outputs = [], []
        for block, skip in zip(self.decoder, skips, strict=True):
            y, alpha = block(y, skip)
            stage_outputs.append(y)
            if alpha is not None:
                alphas.append(alpha.detach())
        self.attention_maps = tuple(alphas)
        aux = (
            tuple(self.aux_heads[str(s)](stage_outputs[s]) for s in self.aux_stages)
            if self.training and len(self.aux_heads)
            else ()
        )
        return SliceLogits(
            class_logit=self.classification_head(features[-1]),
            seg_logit=self.segmentation_head(y),
            aux_seg_logits=aux,
        )
