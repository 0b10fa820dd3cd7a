"""Scoring fused probability volumes against ground-truth masks, streaming case by case.

Memory stays at one case's prediction and mask whatever the number of cases: voxel scores
go into fixed-size histograms (``metrics.ScoreHistogram``), lesions into per-case
component lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from vertebral_fracture.metrics import (
    LesionDetections,
    ScoreHistogram,
    average_precision,
    best_f1_operating_point,
    detect_lesions,
    froc,
    froc_curve,
    operating_point_at,
    precision_recall_curve,
)

FROC_RATES = (0.5, 1, 2, 4, 8)


@dataclass
class MethodScores:
    """Everything measured for one method over the evaluated cases."""

    threshold: float  # chosen on validation cases
    histogram: ScoreHistogram = field(default_factory=ScoreHistogram)
    lesions: list[LesionDetections] = field(default_factory=list)
    predicted_voxels: int = 0
    gt_voxels: int = 0
    cases: list[dict] = field(default_factory=list)

    def add_case(self, case_id: str, prob: np.ndarray, gt: np.ndarray) -> None:
        """Score one case: (X, Y, Z) float32 probabilities and a binary mask on the same grid."""
        case_hist = ScoreHistogram.from_arrays(prob, gt)
        self.histogram.merge(case_hist)
        self.lesions.append(detect_lesions(prob, gt, self.threshold))
        predicted, actual = int(np.count_nonzero(prob >= self.threshold)), int(np.count_nonzero(gt))
        self.predicted_voxels += predicted
        self.gt_voxels += actual
        at_threshold = operating_point_at(case_hist, self.threshold)
        self.cases.append(
            {
                "case": case_id,
                "pr_auc": average_precision(case_hist),
                "f1": at_threshold["f1"],
                "dice": at_threshold["dice"],
                "bloat": predicted / actual if actual else float("nan"),
                "gt_lesions": self.lesions[-1].n_gt,
                "detected_lesions": int(self.lesions[-1].detected.sum()),
            }
        )

    def summary(self) -> dict:
        """The ``metrics.json`` entry of this method."""
        deployed = operating_point_at(self.histogram, self.threshold)
        oracle = best_f1_operating_point(self.histogram)
        return {
            "pr_auc": average_precision(self.histogram),
            "precision": deployed["precision"],
            "recall": deployed["recall"],
            "f1": deployed["f1"],
            "threshold": self.threshold,
            "dice": deployed["dice"],
            "froc": froc(self.lesions, FROC_RATES) if self.lesions else {},
            "bloat": self.predicted_voxels / self.gt_voxels if self.gt_voxels else float("nan"),
            # optimistic: the threshold is chosen on the very cases it is scored on
            "best_f1_on_test": oracle,
        }

    def curves(self) -> dict[str, np.ndarray]:
        precision, recall, _ = precision_recall_curve(self.histogram)
        fps, sensitivity, _ = (
            froc_curve(self.lesions) if self.lesions else (np.zeros(0), np.zeros(0), None)
        )
        return {
            "precision": precision,
            "recall": recall,
            "fps_per_scan": fps,
            "sensitivity": sensitivity,
        }


def score_methods(
    cases: Iterable[tuple[str, Callable[[], np.ndarray], dict[str, Callable[[], np.ndarray]]]],
    thresholds: dict[str, float],
) -> dict[str, MethodScores]:
    """Score every method on every case.

    Args:
        cases: ``(case_id, load_gt, {method: load_prob})`` per case; loaders are called one at
            a time so only one case's volumes are in memory.
        thresholds: method -> operating threshold chosen on validation cases.
    """
    scores = {method: MethodScores(threshold) for method, threshold in thresholds.items()}
    for case_id, load_gt, predictions in cases:
        gt = load_gt() > 0
        for method, load_prob in predictions.items():
            scores[method].add_case(case_id, load_prob(), gt)
    return scores
