"""Findings a reader asks for: detected lesions and per-vertebra verdicts, and their metrics.

Lesions are the candidates a fused score volume proposes under the method's candidate rule
(``metrics.lesion_candidates``, as the lesion metrics count them). Vertebrae come from a label map
(``vertebrae.measure_vertebrae``); each gets the fused score inside it
(``vertebrae.vertebra_scores``) and a verdict at a threshold chosen on validation cases.
Vertebra- and patient-level figures follow the field's reporting (e.g. Nicolaes et al.,
"Detection of vertebral fractures in CT using 3D convolutional neural networks", 2019):
ROC AUC over vertebrae, sensitivity and specificity at the operating point, and ROC AUC over
scans whose score is their highest vertebra score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from vertebral_fracture.metrics import lesion_candidates
from vertebral_fracture.vertebrae import (
    GRADE_LOSS_MIN,
    fractured_vertebrae,
    grown_box,
    level_names,
    level_rank,
    measure_vertebrae,
    vertebra_scores,
)

#: Columns of ``findings.csv`` (one row per detected lesion).
LESION_COLUMNS: tuple[str, ...] = (
    "case",
    "method",
    "lesion",
    "vertebra",
    "x_mm",
    "y_mm",
    "z_mm",
    "volume_mm3",
    "max_probability",
    "mean_probability",
    "box_x0_mm",
    "box_y0_mm",
    "box_z0_mm",
    "box_x1_mm",
    "box_y1_mm",
    "box_z1_mm",
)
#: Columns of ``vertebrae.csv`` (one row per vertebra, case and method).
VERTEBRA_COLUMNS: tuple[str, ...] = (
    "case",
    "method",
    "vertebra",
    "label",
    "x_mm",
    "y_mm",
    "z_mm",
    "fracture_probability",
    "fractured",
    "called_by",
    "ground_truth",
    "anterior_mm",
    "middle_mm",
    "posterior_mm",
    "height_ratio",
    "grade",
    "complete",
)


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """Volume of one voxel of a grid (mm^3)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))


def _world(affine: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    matrix = np.asarray(affine, dtype=np.float64)
    return np.asarray(voxels, dtype=np.float64) @ matrix[:3, :3].T + matrix[:3, 3]


def lesion_findings(
    scores: np.ndarray,
    affine: np.ndarray,
    threshold: float,
    *,
    growth_decades: float = 0.0,
    vertebra_labels: np.ndarray | None = None,
    convention: str | None = None,
) -> list[dict]:
    """Detected lesions of one scan, strongest first.

    Args:
        scores: (X, Y, Z) fused fracture scores.
        affine: (4, 4) voxel-to-world (RAS mm) matrix of the scan.
        threshold: the lesions' seeds (``metrics.lesion_candidates``).
        growth_decades: how far below its peak each lesion grows (``metrics.lesion_candidates``).
        vertebra_labels: optional label map on the same grid; a lesion's vertebra is the
            level holding most of its voxels (grown by one voxel), "" when it touches none.
        convention: the label map's id convention (required with ``vertebra_labels``).

    Returns:
        Dicts with ``lesion`` (1 = strongest), ``vertebra`` ("" without a label map),
        centroid ``x_mm, y_mm, z_mm`` (world), ``volume_mm3``, ``max_probability``,
        ``mean_probability`` and the world bounding box ``box_{x,y,z}{0,1}_mm`` of its voxels.
    """
    components, maxima = lesion_candidates(scores, threshold, growth_decades)
    n = maxima.size
    if n == 0:
        return []
    names = level_names(convention) if vertebra_labels is not None else {}
    voxel_mm3 = voxel_volume_mm3(affine)
    index = np.arange(1, n + 1)
    centroids = _world(
        affine, np.asarray(ndimage.center_of_mass(components > 0, components, index))
    )
    means = ndimage.mean(scores, components, index)
    sizes = ndimage.sum_labels(np.ones(scores.shape, np.int32), components, index)
    rows = []
    for i, box in enumerate(ndimage.find_objects(components)):
        corners = _world(affine, np.array([[s.start for s in box], [s.stop - 1 for s in box]]))
        low, high = corners.min(axis=0), corners.max(axis=0)
        rows.append(
            {
                "vertebra": _lesion_level(components, i + 1, box, vertebra_labels, names),
                **_xyz("{}_mm", centroids[i]),
                "volume_mm3": round(float(sizes[i]) * voxel_mm3, 1),
                "max_probability": float(maxima[i]),
                "mean_probability": float(means[i]),
                **_xyz("box_{}0_mm", low),
                **_xyz("box_{}1_mm", high),
            }
        )
    return [{"lesion": k + 1, **row} for k, row in enumerate(rows)]  # strongest first


def _xyz(name: str, point: np.ndarray) -> dict[str, float]:
    """``{name.format("x"): point[0], ...}`` rounded to 0.1 mm."""
    return {name.format(a): round(float(v), 1) for a, v in zip("xyz", point, strict=True)}


def _lesion_level(
    components: np.ndarray,
    component: int,
    box: tuple[slice, ...],
    labels: np.ndarray | None,
    names: Mapping[int, str],
) -> str:
    """The level holding most of a lesion's voxels (grown by one); "" off every vertebra."""
    if labels is None:
        return ""
    grown = grown_box(box)
    inside = ndimage.binary_dilation(components[grown] == component)
    hits = labels[grown][inside]
    hits = hits[hits > 0].astype(np.int64)
    return names.get(int(np.bincount(hits).argmax()), "") if hits.size else ""


def vertebra_findings(
    scores: Mapping[str, np.ndarray],
    vertebra_labels: np.ndarray,
    affine: np.ndarray,
    convention: str,
    thresholds: Mapping[str, float],
    *,
    call_grade: int | None = None,
    fracture_mask: np.ndarray | None = None,
) -> list[dict]:
    """Every vertebra of one scan under every method: morphometry, score and verdict.

    Args:
        scores: method -> (X, Y, Z) fused scores on the label map's grid.
        vertebra_labels: (X, Y, Z) integer vertebra label map.
        affine: (4, 4) voxel-to-world (RAS mm) matrix.
        convention: the label map's id convention.
        thresholds: method -> vertebra score threshold (chosen on validation cases).
        call_grade: a vertebra measured at this Genant grade or above (1-3, ``grade``) is
            called fractured whatever its score: height loss is how radiologists define a
            compression (Genant 1993), and it does not depend on how the scan looks. None:
            the score alone.
        fracture_mask: optional ground truth on the same grid: fills ``ground_truth``
            (``vertebrae.fractured_vertebrae``), else it is ``None``.

    Returns:
        Dicts with the ``VERTEBRA_COLUMNS`` but ``case``, method by method, each from the
        skull down: ``fractured`` is 1 when ``fracture_probability >= threshold`` or the
        grade reaches ``call_grade``, and ``called_by`` says which ("score", "height",
        "score+height"; "" when not called).
    """
    if call_grade is not None and not 1 <= call_grade <= len(GRADE_LOSS_MIN):
        raise ValueError(
            f"call_grade must be a Genant grade 1-{len(GRADE_LOSS_MIN)} or None, got {call_grade!r}"
        )
    voxel_mm3 = voxel_volume_mm3(affine)
    measured = measure_vertebrae(vertebra_labels, affine, convention)
    truth = (
        fractured_vertebrae(vertebra_labels, fracture_mask, voxel_mm3)
        if fracture_mask is not None
        else {}
    )
    rows = []
    for method, volume in scores.items():
        per_label = vertebra_scores(vertebra_labels, volume, voxel_mm3)
        for vertebra in measured:
            score = per_label[vertebra["label"]]
            grade = vertebra["grade"]
            called = {
                "score": score >= thresholds[method],
                "height": call_grade is not None and grade is not None and grade >= call_grade,
            }
            rows.append(
                {
                    "method": method,
                    **vertebra,
                    "fracture_probability": score,
                    "fractured": int(any(called.values())),
                    "called_by": "+".join(by for by, hit in called.items() if hit),
                    "ground_truth": (
                        int(truth[vertebra["label"]]) if vertebra["label"] in truth else None
                    ),
                }
            )
    return rows


def youden_threshold(scores: Sequence[float], truth: Sequence[bool], default: float) -> float:
    """The score threshold of the highest Youden index (sensitivity + specificity - 1);
    ``default`` when the vertebrae are all of one class. Ties go to the higher threshold."""
    scores_arr, truth_arr = np.asarray(scores, np.float64), np.asarray(truth, bool)
    if truth_arr.all() or not truth_arr.any():
        return float(default)
    candidates = np.unique(scores_arr)
    sensitivity = (scores_arr[truth_arr][None, :] >= candidates[:, None]).mean(axis=1)
    specificity = (scores_arr[~truth_arr][None, :] < candidates[:, None]).mean(axis=1)
    youden = sensitivity + specificity - 1.0
    return float(candidates[np.flatnonzero(youden == youden.max())[-1]])


def vertebra_metrics(
    rows: Sequence[Mapping], threshold: float, patients: Mapping[str, bool]
) -> dict[str, float]:
    """Vertebra- and patient-level figures of one method's vertebra rows.

    Args:
        rows: the method's rows of the vertebra table; those with a ``ground_truth`` count
            for the vertebra figures.
        threshold: the vertebra threshold (chosen on validation cases), reported.
        patients: labelled scan -> whether its fracture mask holds any fracture; a scan scores
            its highest vertebra (0 without vertebrae).

    Returns ``vertebra_auc`` (ROC AUC of the score over vertebrae), ``vertebra_sensitivity``
    and ``vertebra_specificity`` of the call (``fractured``: the score at ``threshold``, or
    the height loss, ``vertebra_findings``), ``patient_auc`` (ROC AUC over scans), and the
    counts behind them; NaN where a class is missing.
    """
    labelled = [r for r in rows if r["ground_truth"] is not None]
    score = np.array([r["fracture_probability"] for r in labelled], np.float64)
    called = np.array([bool(r["fractured"]) for r in labelled], dtype=bool)
    truth = np.array([bool(r["ground_truth"]) for r in labelled], dtype=bool)
    best: dict[str, float] = {}
    for r in rows:
        best[r["case"]] = max(best.get(r["case"], 0.0), float(r["fracture_probability"]))
    case_score = np.array([best.get(case, 0.0) for case in patients], np.float64)
    case_truth = np.array(list(patients.values()), dtype=bool)
    nan = float("nan")
    return {
        "vertebra_auc": _auc(truth, score),
        "vertebra_sensitivity": float(called[truth].mean()) if truth.any() else nan,
        "vertebra_specificity": float((~called[~truth]).mean()) if (~truth).any() else nan,
        "patient_auc": _auc(case_truth, case_score),
        "vertebrae": int(len(truth)),
        "fractured_vertebrae": int(truth.sum()),
        "patients": int(len(case_truth)),
        "vertebra_threshold": float(threshold),
    }


def detection_by_kind(
    rows: Sequence[Mapping], kinds: Mapping[tuple[str, str], str]
) -> dict[str, dict[str, float]]:
    """Vertebra-level detection of each fracture kind by one method.

    Args:
        rows: the method's rows of the vertebra table (``case``, ``vertebra``,
            ``fracture_probability``, ``fractured``, ``ground_truth``).
        kinds: (case, vertebra name) -> fracture kind, e.g. from the phantom manifest.

    Returns kind -> ``n`` (its fractured vertebrae), ``sensitivity`` (share called
    ``fractured``: by the score at the validation threshold or by height) and ``auc`` (ROC
    AUC of their scores against every intact labelled vertebra's; NaN without intact ones).
    """
    intact = [float(r["fracture_probability"]) for r in rows if r["ground_truth"] == 0]
    by_kind: dict[str, list[Mapping]] = {}
    for r in rows:
        kind = kinds.get((r["case"], r["vertebra"]))
        if r["ground_truth"] == 1 and kind is not None:
            by_kind.setdefault(kind, []).append(r)
    figures = {}
    for kind, fractured in sorted(by_kind.items()):
        score = np.array([float(r["fracture_probability"]) for r in fractured] + intact, np.float64)
        truth = np.arange(len(score)) < len(fractured)
        figures[kind] = {
            "n": len(fractured),
            "sensitivity": float(np.mean([bool(r["fractured"]) for r in fractured])),
            "auc": _auc(truth, score),
        }
    return figures


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, score))


def call_label(vertebra: Mapping) -> str:
    """A called vertebra as the report names it: level, score and Genant grade, and "by
    height" where the grade alone called it, e.g. "L1 (0.37, grade 2)"."""
    grade = "" if vertebra["grade"] is None else f", grade {int(vertebra['grade'])}"
    by_height = ", by height" if vertebra["called_by"] == "height" else ""
    score = float(vertebra["fracture_probability"])
    return f"{vertebra['vertebra']} ({score:.2g}{grade}{by_height})"


def case_summary(
    cases: Sequence[str],
    lesions: Sequence[Mapping],
    vertebrae: Sequence[Mapping],
    methods: Sequence[str],
    thresholds: Mapping[str, float],
) -> list[dict]:
    """One line per case answering "what was found": for each method the vertebrae it calls
    fractured (score, Genant grade; "by height" where the grade alone called it), how many of
    its lesion candidates reach its operating point and its strongest lesion, beside the
    ground truth.

    Args:
        cases: case ids, in the order to show.
        lesions: rows of ``findings.csv`` (``lesion_findings`` plus ``case``, ``method``).
        vertebrae: rows of ``vertebrae.csv``.
        methods: the methods to show, e.g. the proposed one and the thesis baseline.
        thresholds: method -> its voxel operating threshold; a candidate whose peak reaches
            it shows in the method's label map, the others only in the detection metrics.
    """
    rows = []
    for case in cases:
        truth = sorted(
            {v["vertebra"] for v in vertebrae if v["case"] == case and v["ground_truth"]},
            key=level_rank,
        )
        row = {"case": case, "ground truth": ", ".join(truth) or "-"}
        for method in methods:
            called = [
                call_label(v)
                for v in vertebrae
                if v["case"] == case and v["method"] == method and v["fractured"]
            ]
            found = [les for les in lesions if les["case"] == case and les["method"] == method]
            strongest = max(found, key=lambda les: les["max_probability"], default=None)
            marked = sum(les["max_probability"] >= thresholds[method] for les in found)
            candidates = "candidate" if len(found) == 1 else "candidates"
            row[f"{method}: vertebrae"] = ", ".join(called) or "-"
            row[f"{method}: lesions"] = (
                f"{marked} marked of {len(found)} {candidates}; strongest "
                f"{strongest['volume_mm3']:.0f} mm³"
                + (f" at {strongest['vertebra']}" if strongest["vertebra"] else "")
                + f" (max {strongest['max_probability']:.2g})"
                if strongest
                else "none"
            )
        rows.append(row)
    return rows
