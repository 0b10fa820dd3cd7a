"""Shapes, attention gates, gradients and weight loading of the slice models."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from vertebral_fracture.models import (
    AttentionGate,
    AttentionUNetMultiTask,
    SliceClassifier,
    SliceLogits,
    build_model,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def first_conv(model: nn.Module) -> nn.Conv2d:
    encoder = model.encoder
    return encoder.conv1 if hasattr(encoder, "conv1") else encoder.features[0][0]


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_b0"])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [64, 128])
def test_multitask_shapes_and_ranges(encoder: str, in_channels: int, size: int) -> None:
    model = build_model("multitask", encoder=encoder, in_channels=in_channels).eval()
    x = torch.randn(2, in_channels, size, size)
    with torch.no_grad():
        out = model(x)
        p_class, p_seg = model.predict_proba(x)
        prob = model.fracture_probability(x)
    assert isinstance(out, SliceLogits)
    assert out.class_logit.shape == (2,)
    assert out.seg_logit.shape == (2, 1, size, size)
    assert p_class.shape == (2,) and p_seg.shape == (2, 1, size, size)
    assert prob.shape == (2, 1, size, size)
    for tensor in (p_class, p_seg, prob):
        assert torch.isfinite(tensor).all()
        assert tensor.min() >= 0 and tensor.max() <= 1


def test_segmentation_prior_initialisation() -> None:
    # Focal-loss prior init: at the start of training pixels sit near P_seg = 0.01, not 0.5.
    model = build_model("multitask").train()
    p_seg = torch.sigmoid(model(torch.randn(2, 1, 64, 64)).seg_logit)
    torch.testing.assert_close(p_seg.mean().item(), 0.01, rtol=0.2, atol=0.0)


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_b0"])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [64, 128])
def test_baseline_shapes_and_constant_probability(encoder: str, in_channels: int, size: int):
    model = build_model("baseline", encoder=encoder, in_channels=in_channels).eval()
    x = torch.randn(2, in_channels, size, size)
    with torch.no_grad():
        out = model(x)
        p_class, p_seg = model.predict_proba(x)
        prob = model.fracture_probability(x)
    assert out.class_logit.shape == (2,) and out.seg_logit is None
    assert p_seg is None
    assert prob.shape == (2, 1, size, size)
    expected = torch.sigmoid(out.class_logit)[:, None, None, None].expand_as(prob)
    torch.testing.assert_close(prob, expected)
    torch.testing.assert_close(p_class, torch.sigmoid(out.class_logit))


def test_multitask_fracture_probability_is_product() -> None:
    model = build_model("multitask").eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        out = model(x)
        prob = model.fracture_probability(x)
    expected = torch.sigmoid(out.class_logit).view(2, 1, 1, 1) * torch.sigmoid(out.seg_logit)
    torch.testing.assert_close(prob, expected)


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_b0"])
def test_one_attention_gate_per_skip_junction(encoder: str) -> None:
    model = build_model("multitask", encoder=encoder)
    gates = [m for m in model.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == 4 == len(model.encoder.out_channels) - 1
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        skips = model.encoder(x)[:-1]
        model(x)
    maps = model.attention_maps
    assert len(maps) == 4
    # Coarse to fine: the gates sit on the stride-16, 8, 4 and 2 skips.
    for alpha, skip in zip(maps, reversed(skips), strict=True):
        assert alpha.shape == (2, 1, *skip.shape[-2:])
        assert alpha.min() >= 0 and alpha.max() <= 1
    assert [a.shape[-1] for a in maps] == [8, 16, 32, 64]


def test_attention_gate_output_is_alpha_times_skip() -> None:
    gate = AttentionGate(gate_channels=8, skip_channels=4, inter_channels=2)
    g, x = torch.randn(3, 8, 4, 4), torch.randn(3, 4, 8, 8)
    gated, alpha = gate(g, x)
    assert gated.shape == x.shape and alpha.shape == (3, 1, 8, 8)
    torch.testing.assert_close(gated, alpha * x)
    with pytest.raises(ValueError, match="inter_channels"):
        AttentionGate(gate_channels=8, skip_channels=4, inter_channels=0)


def test_a_new_model_s_gates_start_nearly_open() -> None:
    # a plain U-Net at the start, which learns where to close its gates
    model = build_model("multitask", in_channels=3).train()
    model(torch.randn(4, 3, 64, 64))
    for alpha in model.attention_maps:
        assert 0.8 < alpha.mean() < 0.95 and alpha.min() < alpha.max()


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_b0"])
def test_gradients_reach_encoder_from_each_head(encoder: str) -> None:
    model = build_model("multitask", encoder=encoder).train()
    x = torch.randn(2, 1, 64, 64)

    model(x).class_logit.sum().backward()
    assert first_conv(model).weight.grad.abs().sum() > 0
    assert model.segmentation_head.weight.grad is None

    model.zero_grad(set_to_none=True)
    model(x).seg_logit.sum().backward()
    assert first_conv(model).weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.classification_head.parameters())


@pytest.mark.parametrize("architecture", ["multitask", "baseline"])
def test_dropout_before_fc(architecture: str) -> None:
    model = build_model(architecture, dropout=0.3)
    head = list(model.classification_head)
    assert [type(m) for m in head] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Linear]
    assert head[2].p == 0.3
    assert head[3].in_features == model.encoder.out_channels[-1] and head[3].out_features == 1


def test_baseline_classes() -> None:
    assert isinstance(build_model("multitask"), AttentionUNetMultiTask)
    assert isinstance(build_model("baseline"), SliceClassifier)


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory):
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("architecture", ["multitask", "baseline"])
def test_pretrained_rgb_weights_into_one_channel(architecture: str, resnet_weights) -> None:
    path, state = resnet_weights
    model = build_model(architecture, in_channels=1, pretrained_weights=str(path))
    conv1 = model.encoder.conv1.weight
    assert conv1.shape == (64, 1, 7, 7)
    torch.testing.assert_close(conv1, state["conv1.weight"].mean(dim=1, keepdim=True))
    torch.testing.assert_close(model.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_pretrained_weights_other_channel_counts(resnet_weights) -> None:
    path, state = resnet_weights
    rgb = build_model("multitask", in_channels=3, pretrained_weights=path)
    torch.testing.assert_close(rgb.encoder.conv1.weight, state["conv1.weight"])
    two = build_model("baseline", in_channels=2, pretrained_weights=path)
    mean = state["conv1.weight"].mean(dim=1, keepdim=True)
    torch.testing.assert_close(two.encoder.conv1.weight, torch.cat([mean, mean], 1) * 1.5)


def test_pretrained_efficientnet(tmp_path) -> None:
    state = torchvision.models.efficientnet_b0(weights=None).state_dict()
    path = tmp_path / "effnet.pt"
    torch.save(state, path)
    model = build_model("baseline", encoder="efficientnet_b0", pretrained_weights=path)
    torch.testing.assert_close(
        model.encoder.features[0][0].weight,
        state["features.0.0.weight"].mean(dim=1, keepdim=True),
    )


def test_pretrained_missing_file_names_path(tmp_path) -> None:
    path = tmp_path / "nope" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="resnet18.pth"):
        build_model("multitask", pretrained_weights=str(path))


def test_pretrained_key_mismatch_names_path(resnet_weights) -> None:
    path, _ = resnet_weights
    with pytest.raises(ValueError, match="resnet18.pt.*does not match"):
        build_model("baseline", encoder="efficientnet_b0", pretrained_weights=path)


@pytest.mark.parametrize("architecture", ["multitask", "baseline"])
@pytest.mark.parametrize("shape", [(1, 1, 48, 64), (1, 1, 64, 40), (1, 2, 64, 64), (1, 64, 64)])
def test_bad_input_shape_raises(architecture: str, shape: tuple[int, ...]) -> None:
    model = build_model(architecture)
    with pytest.raises(ValueError):
        model(torch.randn(*shape))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"architecture": "unet"}, "architecture"),
        ({"architecture": "multitask", "encoder": "vgg16"}, "encoder"),
        ({"architecture": "baseline", "in_channels": 0}, "in_channels"),
        ({"architecture": "multitask", "dropout": 1.0}, "dropout"),
        ({"architecture": "multitask", "decoder_channels": (64, 32)}, "decoder_channels"),
    ],
)
def test_build_model_validates_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


def test_custom_decoder_channels() -> None:
    model = build_model("multitask", decoder_channels=(32, 16, 16, 8, 8)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 96))
    assert out.seg_logit.shape == (1, 1, 64, 96)
    assert model.segmentation_head.in_channels == 8


def test_ungated_ablation_concatenates_skips_unchanged() -> None:
    gated, ungated = build_model("multitask"), build_model("multitask", attention_gates=False)
    assert not any(isinstance(m, AttentionGate) for m in ungated.modules())
    # only the gates differ: same decoder convolutions, fewer parameters
    gate_params = sum(
        p.numel() for m in gated.modules() if isinstance(m, AttentionGate) for p in m.parameters()
    )
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(gated) - count(ungated) == gate_params > 0
    out = ungated(torch.randn(2, 1, 64, 64))
    assert out.seg_logit.shape == (2, 1, 64, 64) and ungated.attention_maps == ()


def test_deep_supervision_heads_only_in_training() -> None:
    model = build_model("multitask", deep_supervision=True).train()
    out = model(torch.randn(2, 1, 64, 64))
    assert [tuple(a.shape) for a in out.aux_seg_logits] == [
        (2, 1, 32, 32),
        (2, 1, 16, 16),
        (2, 1, 8, 8),
    ]
    out.aux_seg_logits[-1].sum().backward()  # the coarsest head reaches the encoder
    assert first_conv(model).weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 64, 64)).aux_seg_logits == ()
    assert build_model("multitask").train()(torch.randn(2, 1, 64, 64)).aux_seg_logits == ()
