"""Streaming evaluation of fused volumes: pooled metrics equal the direct computation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from vertebral_fracture.evaluation import score_methods


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
