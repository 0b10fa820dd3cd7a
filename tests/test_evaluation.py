"""Streaming evaluation of fused volumes: pooled metrics equal the direct computation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from tests.conftest import weak_and_strong_fractures
from vertebral_fracture.evaluation import LesionCandidateSearch, score_methods
from vertebral_fracture.metrics import CandidateRule, ground_truth_lesions


def _case(seed: int, localized: bool):
    rng = np.random.default_rng(seed)
    gt = np.zeros((24, 24, 24), bool)
    gt[8:12, 10:14, 9:13] = True
    if localized:
        prob = rng.random(gt.shape).astype(np.float32) * 0.2
        prob[gt] += 0.7
    else:  # a box around the fracture, the thesis's bloat
        prob = np.zeros(gt.shape, np.float32)
        prob[4:16, 6:18, 5:17] = 0.6 + 0.1 * rng.random((12, 12, 12))
    return gt, prob


def test_pooled_metrics_match_sklearn_and_box_predictions_bloat():
    cases = {
        f"c{i}": {m: _case(i, m == "localized") for m in ("localized", "box")} for i in range(3)
    }
    stream = (
        (
            case,
            lambda c=case: cases[c]["box"][0].astype(np.uint8),
            {m: (lambda c=case, m=m: cases[c][m][1]) for m in ("localized", "box")},
        )
        for case in cases
    )
    scores = score_methods(stream, {"localized": 0.5, "box": 0.5})
    for method in ("localized", "box"):
        gt = np.concatenate([cases[c][method][0].ravel() for c in cases])
        prob = np.concatenate([cases[c][method][1].ravel() for c in cases])
        summary = scores[method].summary()
        assert summary["pr_auc"] == pytest.approx(average_precision_score(gt, prob), abs=1e-3)
        predicted = prob >= 0.5
        precision = (predicted & gt).sum() / predicted.sum()
        recall = (predicted & gt).sum() / gt.sum()
        assert summary["precision"] == pytest.approx(precision, abs=1e-6)
        assert summary["recall"] == pytest.approx(recall, abs=1e-6)
        assert summary["bloat"] == pytest.approx(predicted.sum() / gt.sum())
        assert len(scores[method].cases) == 3
    assert scores["localized"].summary()["bloat"] == pytest.approx(1.0)
    assert scores["box"].summary()["bloat"] > 20
    assert (
        scores["localized"].summary()["froc"]["1"] == 1.0
    )  # every fracture found, no false positive


def _faint_lesion_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A lesion scored 0.02 (below a 0.5 voxel threshold), one bright false blob, low noise."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((24, 24, 24), bool)
    gt[4:8, 4:8, 4:8] = True
    prob = (rng.random(gt.shape) * 1e-4).astype(np.float32)
    prob[gt] = 0.02
    prob[16:19, 16:19, 16:19] = 0.9  # a false positive every threshold finds
    return prob, gt


def test_candidate_search_finds_faint_lesions_on_validation():
    search = LesionCandidateSearch(0.5)
    for seed in range(3):
        search.add_case(*_faint_lesion_case(seed))
    rule = search.best()
    assert 1e-4 <= rule.threshold <= 0.02  # low enough for the lesion, not into the noise
    scores = score_methods(
        [("c", lambda: _faint_lesion_case(9)[1], {"m": lambda: _faint_lesion_case(9)[0]})],
        {"m": 0.5},
        {"m": rule},
    )["m"]
    summary = scores.summary()
    assert summary["lesion_threshold"] == rule.threshold and summary["threshold"] == 0.5
    assert summary["lesion_growth_decades"] == rule.growth_decades
    assert summary["froc"]["1"] == 1.0  # at 0.5 the lesion would be missed
    assert (
        score_methods(
            [("c", lambda: _faint_lesion_case(9)[1], {"m": lambda: _faint_lesion_case(9)[0]})],
            {"m": 0.5},
        )["m"].summary()["froc"]["1"]
        == 0.0
    )


def test_candidate_search_grows_candidates_when_fractures_span_decades():
    prob, mask = weak_and_strong_fractures()
    case = [("c", lambda: ground_truth_lesions(mask), {"m": lambda: prob})]
    plain = LesionCandidateSearch(0.5, growths=(0.0,))
    grown = LesionCandidateSearch(0.5)
    for search in (plain, grown):
        search.add_case(prob, ground_truth_lesions(mask))
    assert grown.best().growth_decades > 0
    for search, found in ((plain, 0.5), (grown, 1.0)):
        scores = score_methods(case, {"m": 0.5}, {"m": search.best()})["m"]
        assert scores.summary()["froc"]["1"] == found


def test_candidate_search_skips_rules_that_paint_the_scan():
    search = LesionCandidateSearch(0.5, max_positive_fraction=0.05)
    search.add_case(*_faint_lesion_case(0))
    # below 1e-4 most voxels are marked: those thresholds are dropped, never labelled
    assert min(rule.threshold for rule in search.detections) == pytest.approx(1e-4)
    # grown 3 decades below its 0.02 peak, the lesion reaches the 1e-4 noise: dropped too
    assert CandidateRule(0.01, 1.0) in search.detections
    assert CandidateRule(0.01, 3.0) not in search.detections
    assert LesionCandidateSearch(0.3).best() == CandidateRule(0.3)  # nothing seen


def test_lesion_search_reaches_the_scores_of_product_fusion():
    # a product of three views puts a lesion at 1e-12 and the background at 0
    gt = np.zeros((20, 20, 20), dtype=bool)
    gt[8:12, 8:12, 8:12] = True
    prob = np.where(gt, 3e-12, 0.0).astype(np.float32)
    search = LesionCandidateSearch(0.5)
    search.add_case(prob, gt)
    rule = search.best()
    assert rule.threshold <= 3e-12 and np.count_nonzero(prob >= rule.threshold) == gt.sum()


def test_case_histograms_round_trip_through_named_arrays():
    from vertebral_fracture.evaluation import histograms_from_arrays, histograms_to_arrays

    gt = np.zeros((8, 8, 8), dtype=bool)
    gt[2:4, 2:4, 2:4] = True
    prob = np.random.default_rng(0).random(gt.shape).astype(np.float32)
    scores = score_methods(
        [("c1", lambda: gt, {"m": lambda: prob})], {"m": 0.5}, keep_case_histograms=True
    )
    restored = histograms_from_arrays(histograms_to_arrays(scores))["m"]["c1"]
    for got, kept in zip(restored, scores["m"].case_histograms[0], strict=True):
        np.testing.assert_array_equal(got, kept)
    with pytest.raises(ValueError, match="keep_case_histograms"):
        histograms_to_arrays(score_methods([("c1", lambda: gt, {"m": lambda: prob})], {"m": 0.5}))
