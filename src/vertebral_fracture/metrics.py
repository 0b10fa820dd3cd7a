"""Evaluation metrics for fused fracture probability volumes.

Voxel level:
    ``ScoreHistogram`` streams (score, label) pairs of any number of voxels into fixed
    log-spaced bins, from which ``average_precision`` (PR-AUC, scikit-learn's step-sum
    definition), ``precision_recall_curve``, ``best_f1_operating_point`` and
    ``operating_point_at`` are computed. Dice at a threshold equals F1 on pooled voxels.

Lesion level (RibFrac challenge protocol, Jin et al. 2020):
    ``detect_lesions`` matches predicted lesions (``lesion_candidates``: 26-connected seeds
    grown below their own peaks) to ground-truth lesions (``ground_truth_lesions``: one per
    fracture) by IoU; ``froc_curve`` / ``froc`` give
    sensitivity versus average false positives per scan. ``bloat`` is predicted volume over
    ground-truth volume.

Convention everywhere: a score ``>= threshold`` is predicted positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

# Binning: a non-negative float32's bit pattern is monotonic in its value, and its top bits
# (8 exponent + 11 mantissa bits) form a log-spaced bin index for free: 2**11 = 2048 bins per
# octave (~6800 per decade, relative bin width 2**-11 ~= 4.9e-4) at every magnitude, from
# subnormals through 1e-12 (product fusion of three views) up to 1. 0.0 and 1.0 each get a
# bin of their own. Merging scores inside a bin only reorders voxels whose scores differ by
# < 0.05 %, which moves AP by far less than 1e-3 (checked against scikit-learn in the tests);
# 2 x 260k int64 counters (4 MiB) are negligible, and no log is needed per voxel.
_DROPPED_BITS = 12
_ONE_BIN = int(np.float32(1.0).view(np.uint32)) >> _DROPPED_BITS
N_BINS = _ONE_BIN + 1
# 4 Mi voxels per chunk bounds temporaries to ~50 MiB whatever the volume size.
_CHUNK = 1 << 22
#: 26-connectivity: voxels touching by a face, an edge or a corner belong to one lesion.
LESION_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
#: Voxels a ground-truth mask component may lie off a vertebra and still be its fracture's
#: (the mask's layer around the bone, a fragment retropulsed a few mm into the canal).
VERTEBRA_REACH = 3
#: False positives per scan at which FROC sensitivity is read (the RibFrac challenge's).
FROC_RATES: tuple[float, ...] = (0.5, 1, 2, 4, 8)


def bin_lower_edges(bins: np.ndarray) -> np.ndarray:
    """Smallest float32 score of each bin index in ``bins`` (int array) -> float32 array.

    ``score >= bin_lower_edges(b)`` selects exactly the scores in bins ``>= b``, so these
    edges are exact thresholds for ``fusion.binarize``.
    """
    return (np.asarray(bins, dtype=np.uint32) << _DROPPED_BITS).view(np.float32)


class CompactHistogram(NamedTuple):
    """The occupied bins of a :class:`ScoreHistogram`: (K,) int64 bin indices, ascending, and
    their (K,) int64 positive and negative counts."""

    bins: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray


class ScoreHistogram:
    """Counts of positive and negative voxels per score bin; memory independent of voxels.

    Attributes:
        positives: (N_BINS,) int64 number of positive voxels per bin.
        negatives: (N_BINS,) int64 number of negative voxels per bin.

    Scores must be probabilities in [0, 1] (values up to ``1 + 2**-11`` share the bin of
    1.0); they are binned as float32. Histograms of separate cases add up (``merge`` or
    ``+``) to exactly the histogram of the pooled voxels.
    """

    def __init__(self) -> None:
        self.positives = np.zeros(N_BINS, dtype=np.int64)
        self.negatives = np.zeros(N_BINS, dtype=np.int64)

    @classmethod
    def from_arrays(cls, scores: np.ndarray, labels: np.ndarray) -> ScoreHistogram:
        """Histogram of one case (for per-case AP) from same-shape scores and labels."""
        hist = cls()
        hist.update(scores, labels)
        return hist

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add voxels: ``scores`` float array in [0, 1], ``labels`` same-shape (nonzero = positive).

        Processes 4 Mi voxels at a time, so extra memory stays ~50 MiB for any size
        (plus one copy of the inputs if they are not contiguous).

        Raises:
            ValueError: shapes differ, or a score is negative, NaN or above 1.
        """
        scores = np.asarray(scores)
        labels = np.asarray(labels)
        if scores.shape != labels.shape:
            raise ValueError(f"scores shape {scores.shape} != labels shape {labels.shape}")
        flat_scores = scores.reshape(-1)
        flat_labels = labels.reshape(-1)
        counts = np.zeros(2 * N_BINS, dtype=np.int64)
        for start in range(0, flat_scores.size, _CHUNK):
            chunk = flat_scores[start : start + _CHUNK].astype(np.float32, copy=False)
            # key = 2 * bin + label, so one bincount counts positives and negatives together.
            keys = chunk.view(np.uint32) >> np.uint32(_DROPPED_BITS - 1)
            keys &= np.uint32(~1 & 0xFFFFFFFF)
            keys |= flat_labels[start : start + _CHUNK] != 0
            # Negative floats and NaN have bit patterns above 1.0's; reject them before
            # bincount would allocate a counter array up to 2**31 long.
            if keys.max() >= 2 * N_BINS:
                raise ValueError("scores must lie in [0, 1] (no NaN or negative values)")
            counts += np.bincount(keys, minlength=2 * N_BINS)
        self.negatives += counts[0::2]
        self.positives += counts[1::2]

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        """Add ``other``'s counts into this histogram in place; returns ``self``."""
        self.positives += other.positives
        self.negatives += other.negatives
        return self

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        """New histogram holding the counts of both operands."""
        return ScoreHistogram().merge(self).merge(other)

    def compact(self) -> CompactHistogram:
        """The occupied bins only (a scan's histogram is sparse): for storage and bootstraps."""
        bins = np.flatnonzero((self.positives + self.negatives) > 0)
        return CompactHistogram(bins, self.positives[bins], self.negatives[bins])

    @classmethod
    def from_compact(cls, compact: CompactHistogram) -> ScoreHistogram:
        """The histogram a :meth:`compact` copy was made from."""
        hist = cls()
        hist.positives[compact.bins] = compact.positives
        hist.negatives[compact.bins] = compact.negatives
        return hist

    @property
    def n_positive(self) -> int:
        """Total number of positive voxels."""
        return int(self.positives.sum())

    def descending_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cumulative counts at each occupied bin, thresholds decreasing.

        Returns:
            thresholds: (T,) float32 lower edges of occupied bins, decreasing.
            tp: (T,) int64 positives with score >= threshold.
            fp: (T,) int64 negatives with score >= threshold.
        """
        occupied = np.flatnonzero((self.positives + self.negatives) > 0)[::-1]
        tp = np.cumsum(self.positives[occupied])
        fp = np.cumsum(self.negatives[occupied])
        return bin_lower_edges(occupied), tp, fp


def average_precision(hist: ScoreHistogram) -> float:
    """Voxel PR-AUC as scikit-learn defines it: ``sum_n (R_n - R_{n-1}) P_n``.

    Step sum over decreasing thresholds, no interpolation (equals
    ``sklearn.metrics.average_precision_score`` up to the 2**-11 relative bin width).
    Returns nan when there are no positive voxels: AP is undefined then (scikit-learn
    warns and returns a meaningless value), so such cases must be excluded, not averaged.
    """
    _, tp, fp = hist.descending_counts()
    return _average_precision(tp, fp)


def _average_precision(tp: np.ndarray, fp: np.ndarray) -> float:
    """AP from cumulative true/false positive counts at decreasing thresholds."""
    if tp.size == 0 or tp[-1] == 0:
        return float("nan")
    precision = tp / np.maximum(tp + fp, 1)
    recall_gain = np.diff(tp, prepend=0) / tp[-1]
    return float(np.sum(recall_gain * precision))


def bootstrap_average_precision(
    runs: Mapping[str, Sequence[Sequence[ScoreHistogram | CompactHistogram]]],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seed-averaged pooled voxel AP of each method on bootstrap resamples of cases and runs.

    Cases, not voxels, are the independent units (neighbouring voxels of a scan are strongly
    correlated, so a voxel bootstrap would give far too narrow intervals), and so are training
    runs (seeds) of a method: each resample draws as many cases as there are and as many runs
    as there are, both with replacement, and averages over the drawn runs the AP of the drawn
    cases' pooled histograms (a two-stage bootstrap; Efron & Tibshirani, "An Introduction to
    the Bootstrap", 1993). Every method gets the same draws (a paired bootstrap), so
    ``samples[a] - samples[b]`` is the bootstrap distribution of the difference of two
    methods on the same cases.

    Args:
        runs: method -> one sequence per run (seed) of one histogram per case; the same
            cases in the same order everywhere (methods may have different numbers of runs).
        n_resamples: number of bootstrap resamples.
        seed: seed of the draws.

    Returns:
        method -> ``(n_resamples,)`` float64 AP samples (nan for a resample without positive
        voxels; summarise with ``np.nanpercentile``).
    """
    n_cases = {len(cases) for r in runs.values() for cases in r}
    if len(n_cases) != 1 or 0 in n_cases or any(len(r) == 0 for r in runs.values()):
        raise ValueError(
            "every method needs at least one run and every run the same, non-zero number of "
            f"cases, got {sorted(n_cases)} cases"
        )
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    n_case = n_cases.pop()
    max_runs = max(len(r) for r in runs.values())
    rng = np.random.default_rng(seed)
    # case_weights[r, c]: how often case c is drawn in resample r (float: BLAS products)
    case_weights = rng.multinomial(n_case, np.full(n_case, 1 / n_case), size=n_resamples)
    # one uniform draw per resample and run slot; a method with k runs reads floor(u * k)
    run_uniforms = rng.random((n_resamples, max_runs))
    samples = {}
    for method, method_runs in runs.items():
        per_run = np.stack(
            [_resampled_ap([_compact(h) for h in cases], case_weights) for cases in method_runs],
            axis=1,
        )  # (n_resamples, runs)
        k = len(method_runs)
        draws = (run_uniforms[:, :k] * k).astype(int)
        samples[method] = np.take_along_axis(per_run, draws, axis=1).mean(axis=1)
    return samples


def _compact(hist: ScoreHistogram | CompactHistogram) -> CompactHistogram:
    return hist.compact() if isinstance(hist, ScoreHistogram) else hist


def _resampled_ap(cases: Sequence[CompactHistogram], weights: np.ndarray) -> np.ndarray:
    """AP of the pooled histogram of ``cases`` weighted by each row of ``weights`` (R, C)."""
    bins = np.unique(np.concatenate([c.bins for c in cases]))[::-1]  # descending scores
    positives = np.zeros((len(cases), bins.size))
    negatives = np.zeros((len(cases), bins.size))
    for i, case in enumerate(cases):
        column = bins.size - 1 - np.searchsorted(bins[::-1], case.bins)
        positives[i, column] = case.positives
        negatives[i, column] = case.negatives
    weights = weights.astype(np.float64)
    out = np.empty(len(weights))
    chunk = max(1, 2**24 // max(bins.size, 1))  # bounds the (rows, bins) temporaries
    for start in range(0, len(weights), chunk):
        w = weights[start : start + chunk]
        tp = np.cumsum(w @ positives, axis=1)
        fp = np.cumsum(w @ negatives, axis=1)
        total = tp[:, -1:]
        precision = tp / np.maximum(tp + fp, 1)
        gain = np.diff(tp, axis=1, prepend=0) / np.where(total > 0, total, 1)
        ap = np.sum(gain * precision, axis=1)
        out[start : start + chunk] = np.where(total[:, 0] > 0, ap, np.nan)
    return out


def precision_recall_curve(hist: ScoreHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve in scikit-learn's layout.

    Returns:
        precision: (T + 1,) float64, last element 1.
        recall: (T + 1,) float64, decreasing, last element 0 (nan where no positives).
        thresholds: (T,) float32 increasing bin lower edges; point i counts
            ``score >= thresholds[i]``.
    """
    thresholds, tp, fp = hist.descending_counts()
    precision = tp / np.maximum(tp + fp, 1)
    n_pos = tp[-1] if tp.size else 0
    recall = tp / n_pos if n_pos else np.full(tp.shape, np.nan)
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        thresholds[::-1],
    )


def _operating_point(tp: int, fp: int, n_pos: int, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 (= pooled Dice) from counts; nan where a ratio is 0/0."""
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / n_pos if n_pos else float("nan")
    denominator = tp + fp + n_pos  # 2TP + FP + FN
    f1 = 2 * tp / denominator if denominator else float("nan")
    return {
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "dice": float(f1),
    }


def best_f1_operating_point(hist: ScoreHistogram) -> dict[str, float]:
    """Threshold maximising voxel F1 (= Dice of the pooled voxels) and its metrics.

    Returns a dict with keys threshold, precision, recall, f1, dice. The threshold is an
    exact bin edge (``prob >= threshold`` reproduces the counts); ties go to the highest
    threshold. Chosen on the very cases it is reported on, this is an optimistic upper
    bound: choose the threshold on validation cases and report test cases with
    ``operating_point_at``. All values are nan when there are no positive voxels.
    """
    thresholds, tp, fp = hist.descending_counts()
    if tp.size == 0 or tp[-1] == 0:
        return dict.fromkeys(("threshold", "precision", "recall", "f1", "dice"), float("nan"))
    n_pos = int(tp[-1])
    best = int(np.argmax(2 * tp / (tp + fp + n_pos)))
    return _operating_point(int(tp[best]), int(fp[best]), n_pos, float(thresholds[best]))


def operating_point_at(hist: ScoreHistogram, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and Dice of ``score >= threshold`` (e.g. chosen on validation).

    Exact when ``threshold`` is a bin edge (as returned by ``best_f1_operating_point``);
    otherwise scores in the same bin as ``threshold`` (within a relative 2**-11 below it)
    also count as positive. Precision is nan when nothing is predicted, recall when
    nothing is positive.
    """
    if threshold > 1.0:
        first_bin = N_BINS
    elif threshold <= 0.0:
        first_bin = 0
    else:
        first_bin = int(np.float32(threshold).view(np.uint32)) >> _DROPPED_BITS
    tp = int(hist.positives[first_bin:].sum())
    fp = int(hist.negatives[first_bin:].sum())
    return _operating_point(tp, fp, hist.n_positive, threshold)


@dataclass(frozen=True)
class LesionDetections:
    """Lesion-level result of one case.

    Attributes:
        component_scores: (K,) float64 maximum probability of each predicted component.
        component_hits: (K,) bool, True when the component's best IoU with a GT lesion is
            above ``iou_hit``.
        component_iou: (K,) float64 best IoU of each component with any GT lesion.
        gt_scores: (G,) float64, per GT lesion the highest score of a hit component credited
            to it (each component is credited to its best-IoU lesion only), -inf when none
            is; lesion j is detected at score threshold t iff ``gt_scores[j] >= t``.
    """

    component_scores: np.ndarray
    component_hits: np.ndarray
    component_iou: np.ndarray
    gt_scores: np.ndarray

    @property
    def n_gt(self) -> int:
        """Number of ground-truth lesions (:func:`ground_truth_lesions`)."""
        return int(self.gt_scores.size)

    @property
    def detected(self) -> np.ndarray:
        """(G,) bool, which GT lesions are matched by a hit component at the label threshold."""
        return np.isfinite(self.gt_scores)


def ground_truth_lesions(
    mask: np.ndarray, vertebrae: np.ndarray | None = None, reach: int = VERTEBRA_REACH
) -> np.ndarray:
    """The fractures of a ground-truth mask, as lesions to detect.

    A lesion is what RibFrac's instance labels mark: one fracture, whatever pieces its mask
    falls into. A mask alone tells fractures apart only by connectivity (its 26-connected
    components); with a vertebra label map a vertebral fracture is its vertebra's (Genant):
    the components within ``reach`` voxels of the same vertebra form one lesion (both
    collapsed endplates of a biconcave fracture, a stray voxel of a burst's fragments).
    Components off every vertebra stay lesions of their own.

    Args:
        mask: (X, Y, Z) ground truth, nonzero = fracture.
        vertebrae: (X, Y, Z) vertebra label map on the mask's grid (0 = none), or None.
        reach: voxels a component may lie off a vertebra and still be its fracture's.

    Returns:
        (X, Y, Z) lesion ids, 0 = background, 1..G = lesions, in the smallest unsigned
        integer type that holds G (a large scan's map stays the size of its mask).
    """
    if vertebrae is not None and vertebrae.shape != mask.shape:
        raise ValueError(f"vertebrae shape {vertebrae.shape} != mask shape {mask.shape}")
    fracture = mask != 0
    box = _foreground_box(fracture)  # labelled there only: int32 labels of a scan are big
    if box is None:
        return np.zeros(mask.shape, dtype=np.uint8)
    origin = np.array([s.start for s in box])
    components, count = ndimage.label(fracture[box], structure=LESION_CONNECTIVITY)
    lesion_of = np.arange(count + 1)
    if vertebrae is not None:
        owners: dict[tuple[str, int], int] = {}
        for component, piece in enumerate(ndimage.find_objects(components), start=1):
            start = origin + [s.start for s in piece]
            stop = origin + [s.stop for s in piece]
            low = np.maximum(start - reach, 0)
            high = np.minimum(stop + reach, mask.shape)
            near = np.zeros(high - low, dtype=bool)
            near[tuple(map(slice, start - low, stop - low))] = components[piece] == component
            if reach > 0:  # scipy dilates until nothing changes for 0 iterations
                near = ndimage.binary_dilation(
                    near, structure=LESION_CONNECTIVITY, iterations=reach
                )
            labels = vertebrae[tuple(map(slice, low, high))][near]
            labels = labels[labels > 0].astype(np.int64)
            owner = (
                ("vertebra", int(np.bincount(labels).argmax())) if labels.size else ("", component)
            )
            lesion_of[component] = owners.setdefault(owner, len(owners) + 1)
    lesions = np.zeros(mask.shape, dtype=np.min_scalar_type(int(lesion_of.max())))
    lesions[box] = lesion_of[components]
    return lesions


def lesion_candidates(
    prob: np.ndarray, threshold: float, growth_decades: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The lesions a score volume proposes: seeds at ``threshold``, each grown from its peak.

    The seeds are the 26-connected components of ``prob >= threshold``. A seed of peak ``p``
    grows to the 26-connected region of ``prob >= min(threshold, p * 10**-growth_decades)``
    around its peak, strongest seed first; a voxel belongs to the first candidate that
    reaches it, and a seed inside a stronger candidate is part of it. Why grow: product
    fusion spreads a fracture's scores over decades, and its extent scales with its peak;
    one absolute threshold cuts a weak fracture to its core (IoU below the hit criterion)
    and merges strong ones with their surroundings. Growing by decades below each peak
    keeps each candidate's extent relative to its own evidence. ``growth_decades=0`` gives
    the plain components.

    Args:
        prob: (X, Y, Z) float scores.
        threshold: seeds are the components at this score.
        growth_decades: how far below its peak a candidate reaches, in decades (>= 0).

    Returns:
        labels: (X, Y, Z) candidate ids, 0 = none, 1..K strongest first, in the smallest
            unsigned integer type that holds the seeds' count.
        scores: (K,) float64 peak score of each candidate, decreasing.
    """
    if growth_decades < 0:
        raise ValueError(f"growth_decades must be >= 0, got {growth_decades}")
    seeded = _foreground_box(prob >= threshold)
    if seeded is None:
        return np.zeros(prob.shape, dtype=np.uint8), np.zeros(0, dtype=np.float64)
    # labelled on foreground boxes only: int32 label maps of a whole large scan are big
    seeds, n_seeds = ndimage.label(prob[seeded] >= threshold, structure=LESION_CONNECTIVITY)
    index = np.arange(1, n_seeds + 1)
    peaks = np.asarray(ndimage.maximum(prob[seeded], seeds, index), dtype=np.float64)
    peak_at = np.asarray(ndimage.maximum_position(prob[seeded], seeds, index))
    peak_at += [s.start for s in seeded]
    floors = np.minimum(threshold, peaks * 10.0**-growth_decades)
    # every grown region lies inside a component at the lowest floor: label those once and
    # grow each seed within its component's box
    reached = _foreground_box(prob >= floors.min())
    reach, _ = ndimage.label(prob[reached] >= floors.min(), structure=LESION_CONNECTIVITY)
    origin = np.array([s.start for s in reached])
    boxes = ndimage.find_objects(reach)
    labels = np.zeros(prob.shape, dtype=np.min_scalar_type(n_seeds))
    scores: list[float] = []
    for seed in np.argsort(-peaks, kind="stable"):
        peak = tuple(peak_at[seed])
        if labels[peak]:
            continue  # inside a stronger candidate
        within = boxes[reach[tuple(peak_at[seed] - origin)] - 1]
        box = tuple(slice(s.start + o, s.stop + o) for s, o in zip(within, origin, strict=True))
        grown, _ = ndimage.label(prob[box] >= floors[seed], structure=LESION_CONNECTIVITY)
        local = tuple(peak_at[seed] - [s.start for s in box])
        scores.append(peaks[seed])
        labels[box][(grown == grown[local]) & (labels[box] == 0)] = len(scores)
    return labels, np.asarray(scores, dtype=np.float64)


def _foreground_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of a boolean volume's True voxels; None when there are none."""
    found = ndimage.find_objects(mask.view(np.uint8))
    return found[0] if found else None


class CandidateRule(NamedTuple):
    """How a method's score volume forms its lesion candidates (:func:`lesion_candidates`)."""

    threshold: float
    growth_decades: float = 0.0


def detect_lesions(
    prob: np.ndarray,
    gt_lesions: np.ndarray,
    threshold: float,
    iou_hit: float = 0.2,
    *,
    growth_decades: float = 0.0,
) -> LesionDetections:
    """Match predicted lesions of one case to ground-truth lesions (RibFrac protocol).

    Args:
        prob: (X, Y, Z) float probability volume.
        gt_lesions: (X, Y, Z) ground-truth lesion ids, 0 = background, 1..G = lesions
            (:func:`ground_truth_lesions`; a boolean mask is one lesion).
        threshold: seeds of the predicted lesions (:func:`lesion_candidates`).
        iou_hit: a candidate is a hit when its IoU with a GT lesion is strictly above this.
        growth_decades: how far below its peak each candidate grows (:func:`lesion_candidates`).
    """
    if prob.shape != gt_lesions.shape:
        raise ValueError(f"prob shape {prob.shape} != gt_lesions shape {gt_lesions.shape}")
    return match_lesions(*lesion_candidates(prob, threshold, growth_decades), gt_lesions, iou_hit)


def match_lesions(
    candidates: np.ndarray, scores: np.ndarray, gt_lesions: np.ndarray, iou_hit: float = 0.2
) -> LesionDetections:
    """Match labelled lesion candidates of one case to ground-truth lesions by IoU.

    Args:
        candidates: (X, Y, Z) candidate ids, 0 = none, 1..K (:func:`lesion_candidates`).
        scores: (K,) score of each candidate.
        gt_lesions: (X, Y, Z) ground-truth lesion ids, 0 = background, 1..G = lesions.
        iou_hit: a candidate is a hit when its IoU with a GT lesion is strictly above this.
    """
    if candidates.shape != gt_lesions.shape:
        raise ValueError(f"candidates shape {candidates.shape} != gt shape {gt_lesions.shape}")
    n_pred = scores.size
    region = _foreground_box((candidates != 0) | (gt_lesions != 0))
    if region is None:
        empty = np.zeros(0, dtype=np.float64)
        return LesionDetections(empty, np.zeros(0, dtype=bool), empty, empty)
    pred_labels = candidates[region].astype(np.intp, copy=False)
    gt_labels = gt_lesions[region].astype(np.intp, copy=False)
    n_gt = int(gt_labels.max())
    gt_sizes = np.bincount(gt_labels.ravel(), minlength=n_gt + 1)[1:]
    if gt_labels.min() < 0 or not gt_sizes.all():
        raise ValueError(f"gt_lesions must number its lesions 1..{n_gt} without gaps")
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)[1:]
    overlap = (pred_labels > 0) & (gt_labels > 0)
    pairs = pred_labels[overlap].astype(np.int64) * (n_gt + 1) + gt_labels[overlap]
    intersection = np.bincount(pairs, minlength=(n_pred + 1) * (n_gt + 1))
    intersection = intersection.reshape(n_pred + 1, n_gt + 1)[1:, 1:]
    iou = intersection / (pred_sizes[:, None] + gt_sizes[None, :] - intersection)
    # a candidate is credited to one lesion only, the one of highest IoU (RibFrac's hit_label)
    best_gt = iou.argmax(axis=1) if n_gt else np.zeros(n_pred, dtype=np.int64)
    matches = np.zeros(iou.shape, dtype=bool)
    if n_gt:
        matches[np.arange(n_pred), best_gt] = iou[np.arange(n_pred), best_gt] > iou_hit

    gt_scores = np.where(matches, scores[:, None], -np.inf).max(axis=0, initial=-np.inf)
    return LesionDetections(
        component_scores=scores,
        component_hits=matches.any(axis=1),
        component_iou=iou.max(axis=1, initial=0.0),
        gt_scores=gt_scores,
    )


def froc_curve(cases: Sequence[LesionDetections]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FROC curve pooled over scans, sweeping the component-score threshold downwards.

    At score threshold t: FP/scan = non-hit components with score >= t / number of scans;
    sensitivity = GT lesions with ``gt_scores >= t`` / all GT lesions. The sweep ends at the
    threshold the components were labelled with (lower scores were never components).

    Returns:
        fp_per_scan: (T + 1,) float64, non-decreasing, starting at 0.
        sensitivity: (T + 1,) float64, non-decreasing, starting at 0 (nan if no GT lesion).
        thresholds: (T + 1,) float64 decreasing distinct component scores, preceded by +inf.
    """
    if not cases:
        raise ValueError("froc needs at least one scan")
    scores = np.concatenate([c.component_scores for c in cases])
    hits = np.concatenate([c.component_hits for c in cases])
    gt_scores = np.sort(np.concatenate([c.gt_scores for c in cases]))
    fp_scores = np.sort(scores[~hits])
    thresholds = np.unique(scores)[::-1]
    # count of values >= t in a sorted array = size - searchsorted(left)
    fp_counts = fp_scores.size - np.searchsorted(fp_scores, thresholds, side="left")
    detected = gt_scores.size - np.searchsorted(gt_scores, thresholds, side="left")
    n_gt = gt_scores.size
    sensitivity = detected / n_gt if n_gt else np.full(thresholds.shape, np.nan)
    return (
        np.concatenate([[0.0], fp_counts / len(cases)]),
        np.concatenate([[0.0 if n_gt else np.nan], sensitivity]),
        np.concatenate([[np.inf], thresholds]),
    )


def froc(
    cases: Sequence[LesionDetections], fp_rates: Sequence[float] = FROC_RATES
) -> dict[str, float]:
    """Sensitivity at each average number of false positives per scan (RibFrac protocol).

    Returns ``{"0.5": s, "1": s, ...}`` (keys formatted with ``:g``); nan when there is no
    GT lesion. See :func:`sensitivity_at` for the interpolation.
    """
    fp_per_scan, sensitivity, _ = froc_curve(cases)
    return sensitivity_at(fp_per_scan, sensitivity, fp_rates)


def sensitivity_at(
    fp_per_scan: np.ndarray, sensitivity: np.ndarray, fp_rates: Sequence[float]
) -> dict[str, float]:
    """FROC sensitivity at each rate, linearly interpolated between the curve's points.

    As the RibFrac challenge's evaluation (``ribfrac/evaluation.py``,
    ``_interpolate_recall_at_fp``): between the last point at or below the rate and the
    first at or above it; the curve's highest sensitivity where it ends below the rate.
    (The reference takes the two ends of its whole threshold grid as those points, which
    equals this on curves of two points; the neighbours are what its docstring means.)

    Args:
        fp_per_scan: (T,) non-decreasing FP per scan along the threshold sweep, from 0.
        sensitivity: (T,) non-decreasing sensitivity at the same thresholds.
        fp_rates: FP-per-scan rates to read the curve at.
    """
    fp = np.asarray(fp_per_scan, dtype=np.float64)
    sens = np.asarray(sensitivity, dtype=np.float64)
    out = {}
    for rate in fp_rates:
        below = np.flatnonzero(fp <= rate)
        above = np.flatnonzero(fp >= rate)
        if not below.size:
            value = 0.0
        elif not above.size:
            value = float(np.nanmax(sens)) if np.isfinite(sens).any() else math.nan
        else:
            i, j = below[-1], above[0]  # the highest sensitivity at fp[i], the first at fp[j]
            value = float(sens[i])
            if fp[j] > fp[i]:
                value += float(sens[j] - sens[i]) * (rate - fp[i]) / (fp[j] - fp[i])
        out[f"{rate:g}"] = value
    return out


def bloat(prob: np.ndarray, gt_mask: np.ndarray, threshold: float) -> float:
    """Predicted positive volume (``prob >= threshold``) over GT volume; nan when GT is empty."""
    gt_volume = np.count_nonzero(gt_mask)
    if gt_volume == 0:
        return float("nan")
    return np.count_nonzero(prob >= threshold) / gt_volume
