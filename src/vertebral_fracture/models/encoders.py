"""Multi-scale torchvision encoders (random init, optional local pretrained state_dict).

Every encoder maps ``(B, in_channels, H, W)`` to five feature maps at strides 2, 4, 8, 16 and 32,
with channel counts given by its ``out_channels`` attribute. Weights are never downloaded:
``pretrained_weights`` is the path of a torchvision state_dict saved locally with ``torch.save``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
import torchvision
from torch import nn

EncoderName = Literal["resnet18", "efficientnet_b0"]


def adapt_first_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a 3-channel (RGB) first-conv kernel ``(O, 3, k, k)`` to ``in_channels`` inputs.

    ``in_channels == 1``: the mean over the RGB channels (a grey image through the mean kernel
    responds like the same grey RGB image through the original kernel, up to a factor 3).
    ``in_channels == C > 1, C != 3``: that mean repeated ``C`` times and scaled by ``3 / C`` so the
    summed response to a constant image is preserved. Kernels already matching are returned as is.
    """
    if weight.shape[1] == in_channels or weight.shape[1] != 3:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    if in_channels == 1:
        return mean
    return mean.repeat(1, in_channels, 1, 1) * (3.0 / in_channels)


class Encoder(nn.Module):
    """Base class: stage outputs and loading of a local torchvision state_dict.

    Subclasses define ``out_channels`` (channels per stage), ``first_conv_key`` (state_dict key of
    the input convolution) and ``ignored_prefixes`` (keys of the torchvision classifier, not part of
    the encoder).
    """

    out_channels: tuple[int, ...]
    first_conv_key: str
    ignored_prefixes: tuple[str, ...]

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")
        self.in_channels = in_channels

    def load_pretrained(self, path: str | Path) -> None:
        """Load a torchvision state_dict from the local file ``path``.

        The input convolution is adapted with :func:`adapt_first_conv_weight`. Raises
        ``FileNotFoundError`` if the file does not exist and ``ValueError`` naming the file if it
        cannot be read or its keys/shapes do not match this encoder.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling errors have many types
            raise ValueError(f"cannot read pretrained weights file {path}: {error}") from error
        if not isinstance(state, Mapping):
            raise ValueError(
                f"pretrained weights file {path} must contain a state_dict, got {type(state)}"
            )
        state = {k: v for k, v in state.items() if not k.startswith(self.ignored_prefixes)}
        if self.first_conv_key in state:
            state[self.first_conv_key] = adapt_first_conv_weight(
                state[self.first_conv_key], self.in_channels
            )
        own = self.state_dict()
        missing = sorted(own.keys() - state.keys())
        unexpected = sorted(state.keys() - own.keys())
        mismatched = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
        if missing or unexpected or mismatched:
            raise ValueError(
                f"pretrained weights file {path} does not match {type(self).__name__}: "
                f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, "
                f"shape mismatches {mismatched[:5]}"
            )
        self.load_state_dict(state)


def _replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """New input conv with ``in_channels`` inputs, torchvision's Kaiming (fan_out) init."""
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    return new


class ResNet18Encoder(Encoder):
    """torchvision ResNet-18 (He et al. 2016, arXiv:1512.03385) from conv1 through layer4.

    Stages: stem conv1-bn-relu (stride 2, 64 ch), maxpool+layer1 (4, 64), layer2 (8, 128),
    layer3 (16, 256), layer4 (32, 512). Module names follow torchvision so its state_dict loads.

    Shapes: ``(B, in_channels, H, W) -> [(B, c_i, H / s_i, W / s_i)]``, ``s_i = 2, 4, 8, 16, 32``.
    """

    out_channels = (64, 64, 128, 256, 512)
    first_conv_key = "conv1.weight"
    ignored_prefixes = ("fc.",)

    def __init__(self, *, in_channels: int = 1) -> None:
        super().__init__(in_channels)
        net = torchvision.models.resnet18(weights=None)
        self.conv1 = net.conv1 if in_channels == 3 else _replace_first_conv(net.conv1, in_channels)
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [stem, f1, f2, f3, self.layer4(f3)]


class EfficientNetB0Encoder(Encoder):
    """torchvision EfficientNet-B0 (Tan & Le 2019, arXiv:1905.11946) ``features[0:8]``.

    Stages (as in segmentation_models_pytorch): features[0:2] (stride 2, 16 ch), features[2]
    (4, 24), features[3] (8, 40), features[4:6] (16, 112), features[6:8] (32, 320). The final
    1x1 conv to 1280 channels (features[8]) and the classifier are not used.

    Shapes: ``(B, in_channels, H, W) -> [(B, c_i, H / s_i, W / s_i)]``, ``s_i = 2, 4, 8, 16, 32``.
    """

    out_channels = (16, 24, 40, 112, 320)
    first_conv_key = "features.0.0.weight"
    ignored_prefixes = ("features.8.", "classifier.")
    _stage_ends = (2, 3, 4, 6, 8)

    def __init__(self, *, in_channels: int = 1) -> None:
        super().__init__(in_channels)
        features = torchvision.models.efficientnet_b0(weights=None).features
        if in_channels != 3:
            features[0][0] = _replace_first_conv(features[0][0], in_channels)
        self.features = features[: self._stage_ends[-1]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        start = 0
        for end in self._stage_ends:
            for block in self.features[start:end]:
                x = block(x)
            outputs.append(x)
            start = end
        return outputs


ENCODERS: dict[str, type[Encoder]] = {
    "resnet18": ResNet18Encoder,
    "efficientnet_b0": EfficientNetB0Encoder,
}


def build_encoder(
    name: EncoderName, *, in_channels: int = 1, pretrained_weights: str | Path | None = None
) -> Encoder:
    """Build encoder ``name`` (see :data:`ENCODERS`), randomly initialised unless
    ``pretrained_weights`` names a local torchvision state_dict file."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    encoder = ENCODERS[name](in_channels=in_channels)
    if pretrained_weights is not None:
        encoder.load_pretrained(pretrained_weights)
    return encoder
