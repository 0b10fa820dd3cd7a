"""The benchmark's off-the-shelf peer (smp.Unet) honours the project's slice-model contract."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("segmentation_models_pytorch", reason="needs the [bench] extra")

from vertebral_fracture.models.base import SliceLogits, SliceModel  # noqa: E402
from vertebral_fracture.models.peer import SmpUnetPeer  # noqa: E402


@pytest.fixture(scope="module")
def peer() -> SmpUnetPeer:
    torch.manual_seed(0)
    return SmpUnetPeer(encoder="resnet18", in_channels=1, dropout=0.2)


def test_output_contract_at_64_px(peer: SmpUnetPeer) -> None:
    x = torch.rand(2, 1, 64, 64)
    out = peer.eval()(x)
    assert isinstance(peer, SliceModel)
    assert isinstance(out, SliceLogits)
    assert out.class_logit.shape == (2,)
    assert out.seg_logit is not None and out.seg_logit.shape == (2, 1, 64, 64)
    p_class, p_seg = peer.predict_proba(x)
    assert p_class.shape == (2,) and p_seg.shape == (2, 1, 64, 64)
    assert peer.fracture_probability(x).shape == (2, 1, 64, 64)


def test_fracture_probability_is_class_times_seg(peer: SmpUnetPeer) -> None:
    x = torch.rand(3, 1, 64, 64)
    with torch.inference_mode():
        peer.eval()
        p_class, p_seg = peer.predict_proba(x)
        prob = peer.fracture_probability(x)
    torch.testing.assert_close(prob, p_class[:, None, None, None] * p_seg)
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0


@pytest.mark.parametrize("head", ["class_logit", "seg_logit"])
def test_gradients_reach_the_encoder_from_each_head(peer: SmpUnetPeer, head: str) -> None:
    peer.train().zero_grad(set_to_none=True)
    out = peer(torch.rand(2, 1, 64, 64))
    getattr(out, head).sum().backward()
    grads = [p.grad for p in peer.net.encoder.parameters() if p.grad is not None]
    assert grads, f"no encoder parameter got a gradient from {head}"
    assert any(float(g.abs().sum()) > 0 for g in grads)
    peer.zero_grad(set_to_none=True)


def test_rejects_bad_input_and_pretrained_weights(peer: SmpUnetPeer) -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        peer(torch.rand(1, 1, 48, 48))
    with pytest.raises(ValueError, match="in_channels"):
        peer(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="pretrained_weights"):
        SmpUnetPeer(pretrained_weights="weights.pt")


def test_build_model_and_checkpoint_round_trip() -> None:
    from vertebral_fracture.models import build_model
    from vertebral_fracture.training import TrainingParams, build_model_from_params

    params = TrainingParams(architecture="smp_unet", slice_size=64)
    model = build_model_from_params(params)
    assert isinstance(model, SmpUnetPeer)
    clone = build_model("smp_unet", encoder="resnet18", in_channels=1)
    clone.load_state_dict(model.state_dict(), strict=True)
