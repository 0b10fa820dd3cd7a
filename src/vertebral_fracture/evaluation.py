"""Scoring fused probability volumes against ground-truth masks, streaming case by case.

Memory stays at one case's prediction and mask whatever the number of cases: voxel scores
go into fixed-size histograms (``metrics.ScoreHistogram``), lesions into per-case
component lists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vertebral_fracture.metrics import (
    FROC_RATES,
    CandidateRule,
    CompactHistogram,
    LesionDetections,
    ScoreHistogram,
    average_precision,
    best_f1_operating_point,
    detect_lesions,
    froc,
    froc_curve,
    lesion_candidates,
    match_lesions,
    operating_point_at,
    precision_recall_curve,
)

logger = logging.getLogger(__name__)

#: Seed thresholds of lesion candidates: 10^(-k/2), k = 1..32 (0.32 down to 1e-16;
#: product fusion of three views puts fracture scores many decades below 1, 1e-11 and lower).
LESION_THRESHOLD_GRID = tuple(10.0 ** (-k / 2) for k in range(1, 33))
#: How far below its peak each candidate may grow, in decades (``metrics.lesion_candidates``):
#: 0 keeps the plain components; a fused score spans up to ~5 decades across a fracture.
LESION_GROWTH_GRID = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


@dataclass
class MethodScores:
    """Everything measured for one method over the evaluated cases."""

    threshold: float  # voxel operating point, chosen on validation cases
    # forms the lesion candidates for detection and FROC; None: components at ``threshold``
    candidate_rule: CandidateRule | None = None
    histogram: ScoreHistogram = field(default_factory=ScoreHistogram)
    lesions: list[LesionDetections] = field(default_factory=list)
    predicted_voxels: int = 0
    gt_voxels: int = 0
    cases: list[dict] = field(default_factory=list)
    # per-case histograms (occupied bins) for case-level bootstrap intervals; None = not kept
    case_histograms: list[CompactHistogram] | None = None

    def add_case(self, case_id: str, prob: np.ndarray, gt: np.ndarray) -> None:
        """Score one case: (X, Y, Z) float32 probabilities and its ground-truth lesion ids on
        the same grid (``metrics.ground_truth_lesions``, 0 = background)."""
        case_hist = ScoreHistogram.from_arrays(prob, gt)
        self.histogram.merge(case_hist)
        if self.case_histograms is not None:
            self.case_histograms.append(case_hist.compact())
        rule = self.candidates
        self.lesions.append(
            detect_lesions(prob, gt, rule.threshold, growth_decades=rule.growth_decades)
        )
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

    @property
    def candidates(self) -> CandidateRule:
        """How this method forms its lesion candidates."""
        return self.candidate_rule or CandidateRule(self.threshold)

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
            "lesion_threshold": self.candidates.threshold,
            "lesion_growth_decades": self.candidates.growth_decades,
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
    candidate_rules: Mapping[str, CandidateRule] | None = None,
    *,
    keep_case_histograms: bool = False,
) -> dict[str, MethodScores]:
    """Score every method on every case.

    Args:
        cases: ``(case_id, load_gt, {method: load_prob})`` per case, ``load_gt`` giving the
            case's ground-truth lesion ids (``metrics.ground_truth_lesions``); loaders are
            called one at a time so only one case's volumes are in memory.
        thresholds: method -> voxel operating threshold chosen on validation cases.
        candidate_rules: method -> how it forms its lesion candidates, chosen on validation
            cases (:class:`LesionCandidateSearch`); a method without one forms them as the
            components at its voxel threshold.
        keep_case_histograms: keep each case's histogram (``MethodScores.case_histograms``,
            for ``metrics.bootstrap_average_precision``); memory then grows with the cases.
    """
    candidate_rules = candidate_rules or {}
    scores = {
        method: MethodScores(
            threshold,
            candidate_rule=candidate_rules.get(method),
            case_histograms=[] if keep_case_histograms else None,
        )
        for method, threshold in thresholds.items()
    }
    for case_id, load_gt, predictions in cases:
        gt = load_gt()
        for method, load_prob in predictions.items():
            scores[method].add_case(case_id, load_prob(), gt)
    return scores


def histograms_to_arrays(scores: Mapping[str, MethodScores]) -> dict[str, np.ndarray]:
    """Each scored case's histogram (kept with ``keep_case_histograms``) as named arrays,
    ``<method>/<case>/{bins,positives,negatives}``: the ``score_histograms`` catalog entry,
    from which intervals over cases and training seeds are drawn (the benchmark)."""
    arrays = {}
    for method, s in scores.items():
        if s.case_histograms is None:
            raise ValueError(f"{method}: scored without keep_case_histograms=True")
        for row, hist in zip(s.cases, s.case_histograms, strict=True):
            for name, values in hist._asdict().items():
                arrays[f"{method}/{row['case']}/{name}"] = values
    return arrays


def histograms_from_arrays(
    arrays: Mapping[str, np.ndarray],
) -> dict[str, dict[str, CompactHistogram]]:
    """method -> case -> histogram, from :func:`histograms_to_arrays`'s layout."""
    out: dict[str, dict[str, CompactHistogram]] = {}
    for key in arrays:
        method, case, name = key.rsplit("/", 2)
        if name == "bins":
            out.setdefault(method, {})[case] = CompactHistogram(
                *(arrays[f"{method}/{case}/{field}"] for field in CompactHistogram._fields)
            )
    return out


class LesionCandidateSearch:
    """Chooses, on validation cases, how a method forms its lesion candidates.

    The voxel operating point maximises voxel F1, which favours tight masks over finding every
    lesion; detection has its own operating point, as in detection challenges where each
    method submits its own candidates. A rule is a seed threshold from ``grid`` and a growth
    below each seed's peak from ``growths`` (``metrics.lesion_candidates``). For every rule
    each streamed case's candidates are matched (``metrics.match_lesions``); :meth:`best`
    returns the rule with the highest FROC sensitivity at ``fp_rate`` false positives per
    scan, ties broken by the mean sensitivity over :data:`FROC_RATES`, then by the lower
    threshold (below a seed's growth floor, a lower one only adds weaker candidates, which
    FROC reads last) and the smaller growth. A rule whose candidates cover more than
    ``max_positive_fraction`` of a case's voxels paints regions, not lesions, and is dropped
    with the lower thresholds at its growth (at every growth when its seeds alone do).

    Args:
        voxel_threshold: the method's voxel operating point; also a seed threshold (when in
            ``(0, 1]``), and without growth the answer when no validation lesion decides.
        grid: further seed thresholds.
        growths: growths below each seed's peak, in decades (>= 0).
        fp_rate: false positives per scan at which sensitivity is compared.
        max_positive_fraction: largest share of a scan's voxels a rule's candidates may cover.
    """

    def __init__(
        self,
        voxel_threshold: float,
        grid: Sequence[float] = LESION_THRESHOLD_GRID,
        growths: Sequence[float] = LESION_GROWTH_GRID,
        *,
        fp_rate: float = 1.0,
        max_positive_fraction: float = 0.02,
    ) -> None:
        if not grid or any(not 0.0 < t <= 1.0 for t in grid):
            raise ValueError(f"grid must hold thresholds in (0, 1], got {grid}")
        if not growths or any(g < 0 for g in growths):
            raise ValueError(f"growths must hold decades >= 0, got {growths}")
        if not 0.0 < max_positive_fraction <= 1.0:
            raise ValueError(
                f"max_positive_fraction must be in (0, 1], got {max_positive_fraction}"
            )
        self.voxel_threshold = voxel_threshold
        thresholds = {*grid, *([voxel_threshold] if 0.0 < voxel_threshold <= 1.0 else [])}
        self.fp_rate = fp_rate
        self.max_positive_fraction = max_positive_fraction
        self.detections: dict[CandidateRule, list[LesionDetections]] = {
            CandidateRule(t, float(g)): []
            for g in sorted(growths)
            for t in sorted(thresholds, reverse=True)
        }

    def add_case(self, prob: np.ndarray, gt: np.ndarray) -> None:
        """Match the candidates of one validation case under every remaining rule
        (``gt``: its ground-truth lesion ids, ``metrics.ground_truth_lesions``)."""
        limit = self.max_positive_fraction * prob.size
        for rule in list(self.detections):
            if rule not in self.detections:
                continue  # dropped with a higher threshold
            # candidates cover their seeds, and seeds are counted without labelling
            if np.count_nonzero(prob >= rule.threshold) > limit:
                self._drop(rule.threshold)
                continue
            labels, scores = lesion_candidates(prob, rule.threshold, rule.growth_decades)
            if np.count_nonzero(labels) > limit:
                self._drop(rule.threshold, rule.growth_decades)
                continue
            self.detections[rule].append(match_lesions(labels, scores, gt))

    def _drop(self, threshold: float, growth_decades: float | None = None) -> None:
        """Forget the rules that paint a scan: ``threshold`` and lower ones (they mark more),
        at ``growth_decades`` or, when None, at every growth."""
        for rule in list(self.detections):
            if rule.threshold <= threshold and growth_decades in (None, rule.growth_decades):
                del self.detections[rule]

    def best(self) -> CandidateRule:
        """The chosen rule (the voxel threshold's components when no validation lesion decides)."""
        ranked = []
        for rule, cases in self.detections.items():
            if not cases or not sum(c.n_gt for c in cases):
                continue
            sensitivity = froc(cases, sorted({*FROC_RATES, self.fp_rate}))
            overall = np.mean([sensitivity[f"{rate:g}"] for rate in FROC_RATES])
            key = (sensitivity[f"{self.fp_rate:g}"], float(overall))
            ranked.append((*key, -rule.threshold, -rule.growth_decades))
        if not ranked:
            return CandidateRule(self.voxel_threshold)
        *_, threshold, growth = max(ranked)
        return CandidateRule(-threshold, -growth)


#: One validation case: its ground-truth lesion ids (``metrics.ground_truth_lesions``, 0 =
#: background) and, per method, a loader of its probabilities.
ValidationCase = tuple[np.ndarray, Mapping[str, Callable[[], np.ndarray]]]


def choose_voxel_thresholds(
    cases: Iterable[ValidationCase], methods: Iterable[str]
) -> dict[str, float]:
    """Per method, the threshold maximising pooled voxel F1 on the validation ``cases``.

    This is the operating point a user deploying the model gets; test cases never choose it.
    A method without validation fracture voxels gets 0.5 (with a warning).
    """
    histograms = {method: ScoreHistogram() for method in methods}
    for gt, predictions in cases:
        for method, load in predictions.items():
            histograms[method].update(load(), gt)
    thresholds = {}
    for method, histogram in sorted(histograms.items()):
        if histogram.n_positive == 0:
            logger.warning("%s: no validation fracture voxels; threshold defaults to 0.5.", method)
            thresholds[method] = 0.5
        else:
            thresholds[method] = float(best_f1_operating_point(histogram)["threshold"])
    return thresholds


def choose_candidate_rules(
    cases: Iterable[ValidationCase], voxel_thresholds: Mapping[str, float]
) -> dict[str, CandidateRule]:
    """Per method, how it forms its lesion candidates (:class:`LesionCandidateSearch` over the
    validation ``cases``, seeded with the method's voxel threshold)."""
    searches = {m: LesionCandidateSearch(t) for m, t in voxel_thresholds.items()}
    for gt, predictions in cases:
        for method, load in predictions.items():
            searches[method].add_case(load(), gt)
    return {method: search.best() for method, search in sorted(searches.items())}
