"""Tests for vertebral_fracture.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score
from sklearn.metrics import precision_recall_curve as sk_precision_recall_curve

from tests.conftest import weak_and_strong_fractures
from vertebral_fracture import metrics
from vertebral_fracture.fusion import binarize
from vertebral_fracture.metrics import (
    LesionDetections,
    ScoreHistogram,
    average_precision,
    best_f1_operating_point,
    bloat,
    detect_lesions,
    froc,
    froc_curve,
    ground_truth_lesions,
    lesion_candidates,
    operating_point_at,
    precision_recall_curve,
)

# ---------------------------------------------------------------- voxel level


def _ap(scores: np.ndarray, labels: np.ndarray) -> float:
    return average_precision(ScoreHistogram.from_arrays(scores, labels))


def test_ap_random_scores_one_percent_positives() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(10**6) < 0.01
    scores = rng.random(10**6, dtype=np.float32)
    scores[labels] **= 0.5  # positives somewhat higher
    assert abs(_ap(scores, labels) - average_precision_score(labels, scores)) < 1e-3


def test_ap_product_fused_scores_resolves_tiny_values() -> None:
    rng = np.random.default_rng(1)
    n = 10**6
    labels = rng.random(n) < 0.02
    views = rng.beta(0.15, 3.0, size=(3, n)).astype(np.float32)
    views[:, labels] = rng.beta(0.3, 1.5, size=(3, int(labels.sum())))
    scores = views[0] * views[1] * views[2]
    assert scores.dtype == np.float32
    tiny = (scores > 1e-12) & (scores < 1e-6)
    assert tiny.mean() > 0.3 and tiny[labels].mean() > 0.05
    reference = average_precision_score(labels, scores)
    # The data only tests resolution if coarse (linear, 1e-3) bins would get AP wrong.
    assert abs(average_precision_score(labels, np.round(scores, 3)) - reference) > 0.01
    assert abs(_ap(scores, labels) - reference) < 1e-3


def test_ap_with_ties_matches_sklearn_exactly() -> None:
    rng = np.random.default_rng(2)
    labels = rng.random(200_000) < 0.1
    levels = rng.integers(0, 21, size=labels.size) + 5 * labels
    scores = (np.minimum(levels, 20) / 20).astype(np.float32)  # 21 tied values incl. 0 and 1
    assert abs(_ap(scores, labels) - average_precision_score(labels, scores)) < 1e-12
    precision, recall, thresholds = precision_recall_curve(
        ScoreHistogram.from_arrays(scores, labels)
    )
    sk_precision, sk_recall, sk_thresholds = sk_precision_recall_curve(labels, scores)
    np.testing.assert_allclose(precision, sk_precision, rtol=1e-12)
    np.testing.assert_allclose(recall, sk_recall, rtol=1e-12)
    # Our thresholds are bin lower edges: at most 2**-11 below, selecting the same voxels.
    assert np.all(thresholds <= sk_thresholds)
    assert np.all(thresholds >= sk_thresholds * (1 - 2**-11))


def test_neighbouring_tiny_scores_are_ranked() -> None:
    # 0.2 % apart near 1e-12: a positive just above a negative must rank first (AP = 1).
    scores = np.array([1.002e-12, 1e-12, 0.0], dtype=np.float32)
    assert _ap(scores, np.array([1, 0, 0])) == 1.0
    assert _ap(scores, np.array([0, 1, 0])) == 0.5


def test_merged_case_histograms_equal_pooled() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random(100_000, dtype=np.float32) ** 8
    labels = rng.random(100_000) < 0.05
    pooled = ScoreHistogram.from_arrays(scores, labels)
    cases = [
        ScoreHistogram.from_arrays(s, y)
        for s, y in zip(np.array_split(scores, 7), np.array_split(labels, 7), strict=True)
    ]
    merged = ScoreHistogram()
    for case in cases:
        merged.merge(case)
    added = cases[0] + cases[1]
    for case in cases[2:]:
        added = added + case
    for hist in (merged, added):
        np.testing.assert_array_equal(hist.positives, pooled.positives)
        np.testing.assert_array_equal(hist.negatives, pooled.negatives)
    assert cases[0].positives.sum() + cases[0].negatives.sum() == len(np.array_split(scores, 7)[0])
    assert average_precision(merged) == average_precision(pooled)


def test_chunked_update_counts_every_voxel(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    scores = rng.random((30, 40, 50), dtype=np.float32)
    labels = (rng.random((30, 40, 50)) < 0.3).astype(np.uint8)
    whole = ScoreHistogram.from_arrays(scores, labels)
    monkeypatch.setattr(metrics, "_CHUNK", 997)
    chunked = ScoreHistogram.from_arrays(scores, labels)
    np.testing.assert_array_equal(chunked.positives, whole.positives)
    np.testing.assert_array_equal(chunked.negatives, whole.negatives)
    assert whole.n_positive == int(labels.sum())
    assert whole.negatives.sum() == labels.size - labels.sum()


@pytest.mark.parametrize("bad", [-0.5, np.nan, 1.5])
def test_invalid_scores_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ScoreHistogram.from_arrays(np.array([0.2, bad]), np.array([0, 1]))


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        ScoreHistogram.from_arrays(np.zeros(3), np.zeros(4))


def test_no_positives_gives_nan() -> None:
    hist = ScoreHistogram.from_arrays(np.array([0.1, 0.9]), np.array([0, 0]))
    assert math.isnan(average_precision(hist))
    assert math.isnan(average_precision(ScoreHistogram()))
    assert all(math.isnan(v) for v in best_f1_operating_point(hist).values())


HAND_SCORES = np.array([0.9, 0.8, 0.3, 0.2], dtype=np.float32)
HAND_LABELS = np.array([1, 1, 0, 1])


def test_best_f1_hand_case() -> None:
    # Thresholds 0.9/0.8/0.3/0.2 give F1 = 2TP/(TP+FP+P) = 2/4, 4/5, 4/6, 6/7: best is 0.2.
    best = best_f1_operating_point(ScoreHistogram.from_arrays(HAND_SCORES, HAND_LABELS))
    assert 0.2 * (1 - 2**-11) < best["threshold"] <= np.float32(0.2)
    assert best["precision"] == 0.75
    assert best["recall"] == 1.0
    assert best["f1"] == pytest.approx(6 / 7, abs=1e-12)
    assert best["dice"] == best["f1"]
    # The threshold is exact: binarizing with it reproduces the chosen operating point.
    np.testing.assert_array_equal(binarize(HAND_SCORES, best["threshold"]), [1, 1, 1, 1])


def test_operating_point_at_given_threshold() -> None:
    hist = ScoreHistogram.from_arrays(HAND_SCORES, HAND_LABELS)
    at_half = operating_point_at(hist, 0.5)  # TP 2, FP 0, FN 1
    assert at_half == {"threshold": 0.5, "precision": 1.0, "recall": 2 / 3, "f1": 0.8, "dice": 0.8}
    at_quarter = operating_point_at(hist, 0.25)  # TP 2, FP 1, FN 1
    assert at_quarter["precision"] == pytest.approx(2 / 3)
    assert at_quarter["f1"] == pytest.approx(2 / 3)
    above = operating_point_at(hist, 1.5)  # nothing predicted
    assert math.isnan(above["precision"]) and above["recall"] == 0.0 and above["f1"] == 0.0


def test_dice_equals_pooled_voxel_dice() -> None:
    rng = np.random.default_rng(5)
    gt = rng.random((20, 20, 20)) < 0.1
    prob = np.clip(rng.normal(0.3 + 0.4 * gt, 0.2), 0, 1).astype(np.float32)
    best = best_f1_operating_point(ScoreHistogram.from_arrays(prob, gt))
    pred = binarize(prob, best["threshold"]).astype(bool)
    dice = 2 * np.count_nonzero(pred & gt) / (pred.sum() + gt.sum())
    assert best["dice"] == pytest.approx(dice, abs=1e-12)


# ---------------------------------------------------------------- lesion level

SHAPE = (30, 30, 30)


def _case_one() -> tuple[np.ndarray, np.ndarray]:
    """GT A hit with IoU 0.5 (score 0.9), GT B missed, one FP blob (score 0.6)."""
    prob = np.zeros(SHAPE, dtype=np.float32)
    gt = np.zeros(SHAPE, dtype=np.uint8)
    gt[2:6, 2:6, 2:6] = 1  # A: 64 voxels
    gt[20:24, 20:24, 20:24] = 1  # B: missed
    prob[2:6, 2:6, 2:10] = 0.5  # 128 voxels covering A: IoU 64 / 128
    prob[3, 3, 3] = 0.9  # component score is its maximum
    prob[10:13, 20:23, 2:5] = 0.6  # false positive
    prob[0, 29, 29] = 0.2  # below the labelling threshold: never a component
    return prob, ground_truth_lesions(gt)


def _case_two() -> tuple[np.ndarray, np.ndarray]:
    """GT C hit (score 0.4); FP 0.7; FP 0.3 made of two cubes touching at one corner."""
    prob = np.zeros(SHAPE, dtype=np.float32)
    gt = np.zeros(SHAPE, dtype=np.uint8)
    gt[10:14, 10:14, 10:14] = 1
    prob[10:14, 10:14, 11:14] = 0.4  # IoU 0.75
    prob[25:28, 2:5, 2:5] = 0.7
    prob[20:22, 20:22, 20:22] = 0.3
    prob[22:24, 22:24, 22:24] = 0.3  # corner contact only: same 26-connected component
    return prob, ground_truth_lesions(gt)


def test_detect_lesions_hand_case() -> None:
    result = detect_lesions(*_case_one(), threshold=0.25)
    np.testing.assert_allclose(result.component_scores, [0.9, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(result.component_hits, [True, False])
    np.testing.assert_allclose(result.component_iou, [0.5, 0.0])
    assert result.n_gt == 2
    np.testing.assert_array_equal(result.detected, [True, False])
    np.testing.assert_allclose(result.gt_scores, [0.9, -np.inf], rtol=1e-6)


def test_26_connectivity() -> None:
    result = detect_lesions(*_case_two(), threshold=0.25)
    np.testing.assert_allclose(result.component_scores, [0.7, 0.4, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(result.component_hits, [False, True, False])


def test_candidates_grown_below_their_own_peak_find_weak_and_strong_fractures() -> None:
    prob, mask = weak_and_strong_fractures()
    gt = ground_truth_lesions(mask)
    # one absolute threshold misses one of the two, whichever it is
    for threshold in (1e-3, 1e-4):
        assert detect_lesions(prob, gt, threshold).detected.sum() == 1
    grown = detect_lesions(prob, gt, 1e-3, growth_decades=2)
    np.testing.assert_array_equal(grown.detected, [True, True])
    np.testing.assert_allclose(grown.component_iou, [1.0, 1.0])
    np.testing.assert_allclose(grown.component_scores, [0.5, 1e-2], rtol=1e-6)


def test_lesion_candidates_without_growth_are_the_components() -> None:
    prob, _ = _case_two()
    labels, scores = lesion_candidates(prob, 0.25)
    components, count = ndimage.label(prob >= 0.25, structure=np.ones((3, 3, 3)))
    assert scores.size == count == 3
    np.testing.assert_allclose(scores, [0.7, 0.4, 0.3], rtol=1e-6)
    for candidate in (1, 2, 3):  # each candidate is one whole component
        assert np.unique(components[labels == candidate]).size == 1
    np.testing.assert_array_equal(labels > 0, components > 0)


def test_a_seed_reached_by_a_stronger_candidate_is_part_of_it() -> None:
    prob = np.zeros((5, 5, 20), dtype=np.float32)
    prob[2, 2, 2:18] = 1e-3  # a ridge joining two seeds
    prob[2, 2, 4] = 0.8
    prob[2, 2, 14] = 0.1
    labels, scores = lesion_candidates(prob, 0.05, growth_decades=3)
    np.testing.assert_allclose(scores, [0.8], rtol=1e-6)
    np.testing.assert_array_equal(labels[2, 2, 2:18], 1)
    # grown less, the ridge is below both floors: two candidates, strongest first
    labels, scores = lesion_candidates(prob, 0.05, growth_decades=1)
    np.testing.assert_allclose(scores, [0.8, 0.1], rtol=1e-6)
    assert labels[2, 2, 4] == 1 and labels[2, 2, 14] == 2 and not labels[2, 2, 9]


def test_lesion_candidates_reject_negative_growth() -> None:
    with pytest.raises(ValueError, match="growth_decades"):
        lesion_candidates(np.zeros((2, 2, 2), np.float32), 0.5, growth_decades=-1)


def test_froc_hand_cases() -> None:
    cases = [detect_lesions(*make(), threshold=0.25) for make in (_case_one, _case_two)]
    # Sweep over 2 scans, 3 GT lesions:
    #   t=0.9 hit A: FP/scan 0,   sens 1/3 | t=0.7 FP: 0.5, 1/3 | t=0.6 FP: 1.0, 1/3
    #   t=0.4 hit C: FP/scan 1.0, sens 2/3 | t=0.3 FP: 1.5, 2/3
    fp_per_scan, sensitivity, thresholds = froc_curve(cases)
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.7, 0.6, 0.4, 0.3], rtol=1e-6)
    np.testing.assert_allclose(fp_per_scan, [0, 0, 0.5, 1.0, 1.0, 1.5])
    np.testing.assert_allclose(sensitivity, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    expected = {"0.5": 1 / 3, "1": 2 / 3, "2": 2 / 3, "4": 2 / 3, "8": 2 / 3}
    assert froc(cases) == pytest.approx(expected)
    assert list(froc(cases)) == ["0.5", "1", "2", "4", "8"]
    assert froc(cases, fp_rates=(0.25,)) == pytest.approx({"0.25": 1 / 3})


@pytest.mark.parametrize(("z_start", "is_hit"), [(17, False), (16, False), (15, True)])
def test_iou_hit_threshold_is_strict(z_start: int, is_hit: bool) -> None:
    # GT is a 20-voxel line; the prediction covers its last 3 / 4 / 5 voxels: IoU .15/.2/.25.
    gt = np.zeros((3, 3, 20), dtype=bool)
    gt[1, 1, :] = True
    prob = np.zeros(gt.shape, dtype=np.float32)
    prob[1, 1, z_start:] = 0.8
    result = detect_lesions(prob, ground_truth_lesions(gt), threshold=0.5)
    assert result.component_iou[0] == pytest.approx((20 - z_start) / 20)
    assert bool(result.component_hits[0]) is is_hit
    assert bool(result.detected[0]) is is_hit


def test_gt_lesion_takes_best_matching_component() -> None:
    gt = np.zeros((4, 4, 10), dtype=bool)
    gt[1:3, 1:3, 1:9] = True  # 32 voxels
    prob = np.zeros(gt.shape, dtype=np.float32)
    prob[1:3, 1:3, 1:4] = 0.5  # two separate pieces, IoU 12/32 each
    prob[1:3, 1:3, 6:9] = 0.8
    result = detect_lesions(prob, ground_truth_lesions(gt), threshold=0.3)
    np.testing.assert_array_equal(result.component_hits, [True, True])
    np.testing.assert_allclose(result.gt_scores, [0.8], rtol=1e-6)


def test_empty_cases() -> None:
    empty = detect_lesions(np.zeros(SHAPE, np.float32), np.zeros(SHAPE, bool), threshold=0.5)
    assert empty.component_scores.size == 0 and empty.n_gt == 0
    assert all(math.isnan(v) for v in froc([empty]).values())
    only_gt = LesionDetections(np.zeros(0), np.zeros(0, bool), np.zeros(0), np.array([-np.inf]))
    assert froc([only_gt, empty]) == {"0.5": 0.0, "1": 0.0, "2": 0.0, "4": 0.0, "8": 0.0}
    with pytest.raises(ValueError):
        froc([])
    with pytest.raises(ValueError, match="shape"):
        detect_lesions(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)), threshold=0.5)


def test_bloat_box_prediction_vs_small_gt() -> None:
    gt = np.zeros((10, 10, 10), dtype=np.uint8)
    gt[4:6, 4:6, 4:6] = 1  # 8 voxels
    prob = np.zeros(gt.shape, dtype=np.float32)
    prob[3:7, 3:7, 3:7] = 0.6  # 64-voxel box around it
    prob[0:2, 0:2, 0:2] = 0.4  # below threshold
    assert bloat(prob, gt, threshold=0.5) == 8.0
    assert bloat(prob, gt, threshold=0.3) == 9.0
    assert math.isnan(bloat(prob, np.zeros_like(gt), threshold=0.5))


# ---------------------------------------------------------------- bootstrap


def _case_histograms(n_cases: int, signal: float, seed: int) -> list[ScoreHistogram]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_cases):
        labels = rng.random(2000) < 0.05
        scores = np.clip(rng.random(2000) * 0.6 + signal * labels, 0, 1)
        out.append(ScoreHistogram.from_arrays(scores, labels))
    return out


def test_bootstrap_interval_contains_the_pooled_ap_and_pairs_the_draws():
    good = _case_histograms(10, signal=0.5, seed=1)
    weak = _case_histograms(10, signal=0.1, seed=2)
    samples = metrics.bootstrap_average_precision(
        {"good": [good], "same": [good], "weak": [weak]}, n_resamples=300, seed=0
    )
    assert {k: v.shape for k, v in samples.items()} == {k: (300,) for k in ("good", "same", "weak")}
    pooled = average_precision(sum(good[1:], good[0]))
    low, high = np.percentile(samples["good"], [2.5, 97.5])
    assert low < pooled < high and high - low > 0.01  # resampling cases does vary the AP
    # paired: the same draws for every method, so identical inputs give identical samples
    np.testing.assert_array_equal(samples["good"], samples["same"])
    assert (samples["good"] > samples["weak"]).all()


def test_bootstrap_of_one_case_is_that_case():
    case = _case_histograms(1, signal=0.3, seed=3)
    samples = metrics.bootstrap_average_precision({"m": [case]}, n_resamples=20)
    np.testing.assert_allclose(samples["m"], average_precision(case[0]))


def test_bootstrap_over_runs_averages_the_drawn_seeds():
    runs = [_case_histograms(6, signal=s, seed=i) for i, s in enumerate((0.2, 0.4, 0.6))]
    samples = metrics.bootstrap_average_precision({"m": runs}, n_resamples=400, seed=1)["m"]
    per_run = [average_precision(sum(r[1:], r[0])) for r in runs]
    # the draws spread across runs: wider than any one run's case-only interval
    assert samples.min() < np.mean(per_run) < samples.max()
    single = metrics.bootstrap_average_precision({"m": runs[1:2]}, n_resamples=400, seed=1)["m"]
    assert np.ptp(samples) > np.ptp(single)
    # methods may have different numbers of runs (a baseline trained once); cases stay paired
    both = metrics.bootstrap_average_precision(
        {"three": runs, "one": runs[1:2]}, n_resamples=400, seed=1
    )
    np.testing.assert_allclose(both["one"], single)


def test_bootstrap_accepts_compact_histograms():
    cases = _case_histograms(5, signal=0.3, seed=4)
    dense = metrics.bootstrap_average_precision({"m": [cases]}, n_resamples=50)["m"]
    compact = [h.compact() for h in cases]
    np.testing.assert_allclose(
        metrics.bootstrap_average_precision({"m": [compact]}, n_resamples=50)["m"], dense
    )
    restored = ScoreHistogram.from_compact(compact[0])
    np.testing.assert_array_equal(restored.positives, cases[0].positives)
    np.testing.assert_array_equal(restored.negatives, cases[0].negatives)


def test_bootstrap_needs_matching_cases():
    with pytest.raises(ValueError, match="same, non-zero number of"):
        metrics.bootstrap_average_precision(
            {"a": [_case_histograms(3, 0.3, 0)], "b": [_case_histograms(2, 0.3, 0)]}
        )
    with pytest.raises(ValueError, match="at least one run"):
        metrics.bootstrap_average_precision({"a": [_case_histograms(3, 0.3, 0)], "b": []})


# ---------------------------------------------------------------- RibFrac protocol


def test_froc_interpolates_between_curve_points_as_ribfrac() -> None:
    # 2 scans, 2 GT lesions. Candidates: hit A at 0.9, false positives at 0.8 and 0.7 (scan 1),
    # hit B at 0.6 (scan 2). Curve: (0, 0.5) (0.5, 0.5) (1.0, 0.5) (1.0, 1.0).
    gt_a = np.zeros((12, 12, 12), dtype=bool)
    gt_a[2:5, 2:5, 2:5] = True
    prob_a = np.zeros(gt_a.shape, dtype=np.float32)
    prob_a[2:5, 2:5, 2:5] = 0.9
    prob_a[8:10, 8:10, 8:10] = 0.8
    prob_a[8:10, 1:3, 8:10] = 0.7
    gt_b = np.zeros_like(gt_a)
    gt_b[5:8, 5:8, 5:8] = True
    prob_b = np.where(gt_b, 0.6, 0.0).astype(np.float32)
    cases = [
        detect_lesions(p, ground_truth_lesions(g), threshold=0.5)
        for p, g in ((prob_a, gt_a), (prob_b, gt_b))
    ]
    fp, sens, _ = froc_curve(cases)
    np.testing.assert_allclose(fp, [0, 0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(sens, [0, 0.5, 0.5, 0.5, 1.0])
    # RibFrac reads 0.5 FP between (0.5, 0.5) and (1.0, 0.5): 0.5; at 1 FP the point (1, 1);
    # beyond the curve's end its highest sensitivity. Halfway to a jump, half the jump:
    assert froc(cases) == pytest.approx({"0.5": 0.5, "1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0})
    assert metrics.sensitivity_at(np.array([0.0, 1.0]), np.array([0.2, 0.6]), [0.25]) == (
        pytest.approx({"0.25": 0.3})
    )


def test_a_candidate_is_credited_to_its_best_iou_lesion_only() -> None:
    # one candidate covers lesion A entirely and half of lesion B: IoU with A 8/24 beats B's
    gt = np.zeros((4, 4, 12), dtype=bool)
    gt[1:3, 1:3, 0:2] = True  # A: 8 voxels
    gt[1:3, 1:3, 4:10] = True  # B: 24 voxels
    prob = np.zeros(gt.shape, dtype=np.float32)
    prob[1:3, 1:3, 0:7] = 0.9  # 28 voxels: IoU(A) = 8/28, IoU(B) = 12/40
    result = detect_lesions(prob, ground_truth_lesions(gt), threshold=0.5)
    assert result.n_gt == 2
    np.testing.assert_allclose(result.component_iou, [12 / 40])
    # RibFrac's hit_label: B (highest IoU) only; A stays undetected
    np.testing.assert_array_equal(result.detected, [False, True])
    assert froc([result], fp_rates=(1,)) == {"1": 0.5}


def test_a_fracture_is_one_lesion_whatever_pieces_its_mask_falls_into() -> None:
    vertebrae = np.zeros((20, 12, 24), dtype=np.int16)
    vertebrae[2:10, 2:10, 0:10] = 20  # T12
    vertebrae[2:10, 2:10, 12:22] = 21  # L1
    mask = np.zeros(vertebrae.shape, dtype=np.uint8)
    mask[2:10, 2:10, 8:10] = 1  # T12 biconcave: superior band ...
    mask[2:10, 2:10, 0:2] = 1  # ... and inferior band, apart
    mask[11, 5, 5] = 1  # a stray fragment voxel just off T12
    mask[2:10, 2:10, 12:14] = 1  # L1 compression
    mask[16:18, 5:7, 5:7] = 1  # off every vertebra: a lesion of its own
    lesions = ground_truth_lesions(mask, vertebrae)
    assert lesions.dtype == np.uint8 and np.array_equal(lesions > 0, mask > 0)
    assert np.unique(lesions[lesions > 0]).size == 3
    assert lesions[5, 5, 9] == lesions[5, 5, 0] == lesions[11, 5, 5] != lesions[5, 5, 12]
    assert np.unique(ground_truth_lesions(mask)[mask > 0]).size == 5  # without vertebrae

    prob = np.zeros(mask.shape, dtype=np.float32)
    prob[2:10, 2:10, 8:10] = 0.9  # finds T12's superior band: IoU 128 / 257 with its fracture
    result = detect_lesions(prob, lesions, threshold=0.5)
    assert result.n_gt == 3
    np.testing.assert_allclose(result.component_iou, [128 / 257])
    assert froc([result], fp_rates=(1,)) == pytest.approx({"1": 1 / 3})
    with pytest.raises(ValueError, match="vertebrae shape"):
        ground_truth_lesions(mask, vertebrae[:, :, :20])
    with pytest.raises(ValueError, match="without gaps"):
        detect_lesions(prob, np.where(lesions == 1, 3, lesions), threshold=0.5)
