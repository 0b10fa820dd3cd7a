"""Losses against hand-computed references on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vertebral_fracture.losses import MultiTaskLoss, focal_loss, focal_tversky_loss
from vertebral_fracture.models import SliceLogits, build_model


def logit(p: list[float]) -> torch.Tensor:
    """Logits whose sigmoid is exactly ``p`` (float64)."""
    p = torch.tensor(p, dtype=torch.float64)
    return torch.log(p) - torch.log1p(-p)


def np_bce(z: np.ndarray, t: np.ndarray) -> float:
    p = 1.0 / (1.0 + np.exp(-z))
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


# ------------------------------------------------------------------ focal loss


def test_focal_loss_hand_computed() -> None:
    # p = 0.9 on a positive, p = 0.2 on a negative.
    z, t = logit([0.9, 0.2]), torch.tensor([1.0, 0.0], dtype=torch.float64)
    no_alpha = (0.1**2 * -math.log(0.9) + 0.2**2 * -math.log(0.8)) / 2
    with_alpha = (0.25 * 0.1**2 * -math.log(0.9) + 0.75 * 0.2**2 * -math.log(0.8)) / 2
    assert focal_loss(z, t, alpha=None).item() == pytest.approx(no_alpha, rel=1e-9)
    assert focal_loss(z, t).item() == pytest.approx(with_alpha, rel=1e-9)  # default alpha 0.25


def test_focal_loss_gamma_zero_is_bce() -> None:
    z = np.array([[-2.0, 0.5], [3.0, -0.1]])
    t = np.array([[0.0, 1.0], [1.0, 1.0]])
    got = focal_loss(torch.tensor(z), torch.tensor(t), gamma=0.0, alpha=None).item()
    assert got == pytest.approx(np_bce(z, t), rel=1e-9)


def test_focal_loss_stable_for_large_logits() -> None:
    z = torch.tensor([100.0, -100.0, 100.0], requires_grad=True)
    t = torch.tensor([1.0, 0.0, 0.0])
    loss = focal_loss(z, t, alpha=None)
    loss.backward()
    # Only the confidently wrong pixel contributes: (1 - 0)^2 * 100 / 3.
    assert loss.item() == pytest.approx(100.0 / 3, rel=1e-5)
    assert torch.isfinite(z.grad).all()


# ---------------------------------------------------------- focal Tversky loss


def test_focal_tversky_hand_computed() -> None:
    z = logit([0.9, 0.2, 0.6, 0.1]).view(1, 1, 2, 2)
    t = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64).view(1, 1, 2, 2)
    tp, fn, fp = 0.9 + 0.2, 0.1 + 0.8, 0.6 + 0.1
    ti = (tp + 1.0) / (tp + 0.7 * fn + 0.3 * fp + 1.0)  # 2.1 / 2.94
    assert ti == pytest.approx(2.1 / 2.94)
    assert focal_tversky_loss(z, t).item() == pytest.approx((1 - ti) ** 0.75, rel=1e-9)


def test_focal_tversky_is_one_index_over_the_batch() -> None:
    # Image 0 all correct positives, image 1 an empty mask with one false positive.
    z = logit([0.8, 0.8, 0.5, 0.1]).view(2, 1, 1, 2)
    t = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64).view(2, 1, 1, 2)
    tp, fn, fp = 1.6, 0.4, 0.6
    ti = (tp + 1) / (tp + 0.7 * fn + 0.3 * fp + 1)
    assert focal_tversky_loss(z, t).item() == pytest.approx((1 - ti) ** 0.75, rel=1e-9)


def test_focal_tversky_penalises_false_negatives_more() -> None:
    # Same number of errors (one pixel), either missed (FN) or hallucinated (FP).
    z = torch.tensor([30.0, 30.0, -30.0, -30.0, -30.0], dtype=torch.float64)
    only_fn = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)  # TP 2, FN 1
    z_fp = torch.tensor([30.0, 30.0, 30.0, -30.0, -30.0], dtype=torch.float64)
    only_fp = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # TP 2, FP 1
    loss_fn = focal_tversky_loss(z, only_fn).item()
    loss_fp = focal_tversky_loss(z_fp, only_fp).item()
    assert loss_fn == pytest.approx((1 - 3 / 3.7) ** 0.75, rel=1e-6)
    assert loss_fp == pytest.approx((1 - 3 / 3.3) ** 0.75, rel=1e-6)
    assert loss_fn > loss_fp
    # The keyword names say which error each weight scales: swapping them swaps the ranking.
    swapped = {"fn_weight": 0.3, "fp_weight": 0.7}
    assert focal_tversky_loss(z, only_fn, **swapped).item() == pytest.approx(loss_fp, rel=1e-6)
    assert focal_tversky_loss(z_fp, only_fp, **swapped).item() == pytest.approx(loss_fn, rel=1e-6)


def test_focal_tversky_empty_mask_penalises_foreground() -> None:
    target = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    losses = []
    for value in (-6.0, -3.0, 0.0, 3.0):
        z = torch.full_like(target, value)
        fp = 32 / (1 + math.exp(-value))
        expected = (1 - 1 / (0.3 * fp + 1)) ** 0.75  # TP = FN = 0, smooth = 1
        loss = focal_tversky_loss(z, target).item()
        assert loss == pytest.approx(expected, rel=1e-9)
        losses.append(loss)
    assert losses[0] > 0
    assert losses == sorted(losses) and len(set(losses)) == 4


def test_focal_tversky_finite_gradient_at_perfect_prediction() -> None:
    z = torch.tensor([50.0, -50.0], requires_grad=True)
    focal_tversky_loss(z, torch.tensor([1.0, 0.0])).backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"smooth": 0.0}, "smooth"), ({"gamma": 0.0}, "gamma"), ({"fn_weight": -1.0}, "fn_weight")],
)
def test_focal_tversky_validates(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        focal_tversky_loss(torch.zeros(2), torch.zeros(2), **kwargs)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same shape"):
        focal_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))


# -------------------------------------------------------------- MultiTaskLoss


def _batch() -> tuple[SliceLogits, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    class_logit = torch.tensor([1.5, -0.5, 0.2], dtype=torch.float64)
    seg_logit = torch.randn(3, 1, 4, 4, generator=generator, dtype=torch.float64)
    mask = (torch.rand(3, 1, 4, 4, generator=generator) > 0.7).double()
    return SliceLogits(class_logit, seg_logit), torch.tensor([1.0, 0.0, 1.0]).double(), mask


def test_multitask_loss_class_term_is_bce() -> None:
    logits, class_target, mask = _batch()
    out = MultiTaskLoss()(logits, class_target, mask)
    assert set(out) == {"total", "class", "seg"}
    assert out["class"].item() == pytest.approx(
        np_bce(logits.class_logit.numpy(), class_target.numpy()), rel=1e-9
    )


@pytest.mark.parametrize("seg_loss", ["focal", "focal_tversky"])
def test_multitask_loss_weighting(seg_loss: str) -> None:
    logits, class_target, mask = _batch()
    out = MultiTaskLoss(class_weight=2.0, seg_weight=0.5, seg_loss=seg_loss)(
        logits, class_target, mask
    )
    reference = focal_loss if seg_loss == "focal" else focal_tversky_loss
    assert out["seg"].item() == pytest.approx(reference(logits.seg_logit, mask).item())
    assert out["total"].item() == pytest.approx(
        2.0 * out["class"].item() + 0.5 * out["seg"].item(), rel=1e-12
    )


def test_multitask_loss_default_weights() -> None:
    logits, class_target, mask = _batch()
    out = MultiTaskLoss()(logits, class_target, mask)
    assert out["total"].item() == pytest.approx(out["class"].item() + 3.0 * out["seg"].item())


def test_baseline_logits_give_zero_seg_term() -> None:
    logits, class_target, mask = _batch()
    out = MultiTaskLoss(class_weight=3.0)(SliceLogits(logits.class_logit, None), class_target, mask)
    assert out["seg"].item() == 0.0
    assert out["total"].item() == pytest.approx(3.0 * out["class"].item())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"class_weight": -1.0}, "class_weight"),
        ({"seg_weight": -0.1}, "seg_weight"),
        ({"seg_loss": "dice"}, "focal.*focal_tversky"),
        ({"tversky_smooth": 0.0}, "tversky_smooth"),
        ({"focal_alpha": 1.5}, "focal_alpha"),
    ],
)
def test_multitask_loss_validates(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MultiTaskLoss(**kwargs)


@pytest.mark.parametrize("architecture", ["multitask", "baseline"])
def test_loss_backpropagates_through_models(architecture: str) -> None:
    torch.manual_seed(0)
    model = build_model(architecture).train()
    x = torch.randn(2, 1, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 20:30, 20:30] = 1
    out = MultiTaskLoss()(model(x), torch.tensor([1.0, 0.0]), mask)
    out["total"].backward()
    assert torch.isfinite(out["total"])
    assert model.encoder.conv1.weight.grad.abs().sum() > 0


def test_deep_supervision_weights_scales_and_keeps_the_loss_scale() -> None:
    logits, class_target, mask = _batch()
    loss = MultiTaskLoss(seg_loss="focal_tversky")
    plain = loss(logits, class_target, mask)["seg"]
    # auxiliary maps identical to the main one: the weights sum to 1, so the term is unchanged
    same = logits._replace(aux_seg_logits=(logits.seg_logit, logits.seg_logit))
    assert loss(same, class_target, mask)["seg"].item() == pytest.approx(plain.item())
    # a coarse map is upsampled to the mask and weighed 1/3 (weights 1 and 1/2, normalised)
    coarse = torch.full((3, 1, 2, 2), 5.0, dtype=torch.float64)
    out = loss(logits._replace(aux_seg_logits=(coarse,)), class_target, mask)["seg"]
    upsampled = torch.full_like(logits.seg_logit, 5.0)
    expected = (2 * plain + focal_tversky_loss(upsampled, mask)) / 3
    assert out.item() == pytest.approx(expected.item())
