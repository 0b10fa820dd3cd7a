"""Nodes of the reporting pipeline: metrics, tables, curves, 3D pictures, the HTML report."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
from highdicom import UID
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from vertebral_fracture.cases import is_dicom_series
from vertebral_fracture.dicom import (
    REFERENCE_UIDS,
    fracture_segmentation,
    missing_reference_uids,
    read_series_headers,
)
from vertebral_fracture.evaluation import FROC_RATES, histograms_to_arrays, score_methods
from vertebral_fracture.findings import (
    LESION_COLUMNS,
    VERTEBRA_COLUMNS,
    case_summary,
    lesion_findings,
    vertebra_findings,
    vertebra_metrics,
)
from vertebral_fracture.inference import attention_maps
from vertebral_fracture.metrics import CandidateRule
from vertebral_fracture.pipelines.fusion.nodes import fused_by_case, load_lesions, load_voxels
from vertebral_fracture.progress import Progress
from vertebral_fracture.reporting import (
    attention_figure,
    froc_figure,
    isosurface_html,
    mip_comparison_figure,
    pr_curves_figure,
    render_report,
    slice_overlay_figure,
    vertebra_findings_figure,
)
from vertebral_fracture.slicing import SliceStack
from vertebral_fracture.training import TrainingParams, load_model_from_checkpoint
from vertebral_fracture.vertebrae import GRADE_LOSS_MIN

logger = logging.getLogger(__name__)

LazyImages = dict[str, Callable[[], nib.Nifti1Image]]


class ReportingParams(BaseModel):
    """What the report compares and how many cases it pictures."""

    model_config = ConfigDict(extra="forbid")
    proposed: str = "multitask_product"
    baseline: str = "baseline_mean"
    picture_cases: int = Field(3, ge=0)
    # a vertebra measured at this Genant grade or above is called fractured whatever its
    # score (``findings.vertebra_findings``); None: the score alone
    call_grade: int | None = Field(2, ge=1, le=len(GRADE_LOSS_MIN))


def evaluate_methods(
    raw_scans: LazyImages,
    vertebra_maps: LazyImages,
    case_index: list[dict],
    thresholds: dict[str, float],
    candidate_rules: dict[str, dict[str, float]],
    findings: dict,
    vertebra_thresholds: dict[str, float],
    *fused: LazyImages,
) -> tuple[dict, pd.DataFrame, str, dict[str, Figure], dict[str, np.ndarray]]:
    """Voxel, lesion, vertebra and patient metrics of every fused method on the labelled
    test cases.

    Voxel figures use each method's validation voxel threshold; lesion detection and FROC
    match the candidates of its validation candidate rule to the fractures (one per
    vertebra of ``vertebra_maps``, ``metrics.ground_truth_lesions``); vertebra and patient figures
    (``findings.vertebra_metrics``, from the findings' vertebrae; a scan is fractured when
    its mask holds fracture) its validation vertebra threshold (NaN without labels).

    Returns ``metrics.json`` content, the per-case table, the markdown comparison table,
    the precision-recall and FROC figures, and each case's score histogram per method
    (``evaluation.histograms_to_arrays``: intervals over cases need them).
    """
    tests = [r for r in case_index if r["split"] == "test" and r["mask"]]
    by_case = fused_by_case(fused)
    cases = (
        (
            r["case_id"],
            functools.partial(load_lesions, raw_scans[r["mask"]], vertebra_maps[r["case_id"]]),
            {
                m: functools.partial(load_voxels, load)
                for m, load in by_case.get(r["case_id"], {}).items()
            },
        )
        for r in tests
    )
    rules = {method: CandidateRule(**rule) for method, rule in candidate_rules.items()}
    scores = score_methods(cases, thresholds, rules, keep_case_histograms=True)
    methods = {name: s.summary() for name, s in scores.items()}
    patients = {r["case_id"]: bool(r["fracture_voxels"]) for r in tests}
    for name, summary in methods.items():
        rows = [r for r in findings["vertebrae"] if r["method"] == name]
        summary.update(vertebra_metrics(rows, vertebra_thresholds[name], patients))
    case_rows = [dict(row, method=name) for name, s in scores.items() for row in s.cases]
    case_table = pd.DataFrame(
        case_rows,
        columns=[
            "case",
            "method",
            "pr_auc",
            "f1",
            "dice",
            "bloat",
            "gt_lesions",
            "detected_lesions",
        ],
    )
    metrics = {
        "methods": methods,
        "cases": case_rows,
        "dataset": {
            "cases": len(tests),
            "voxels": int(sum(np.prod(r["shape"]) for r in tests)),
            "positive_voxels": int(sum(r["fracture_voxels"] or 0 for r in tests)),
        },
    }
    curves = {name: s.curves() for name, s in scores.items()}
    plots = {
        "precision_recall": pr_curves_figure(
            {n: (c["recall"], c["precision"]) for n, c in curves.items()},
            {n: m["pr_auc"] for n, m in methods.items()},
            title="Voxel precision-recall, test cases pooled",
        ),
        "froc": froc_figure(
            {
                n: (c["fps_per_scan"], c["sensitivity"])
                for n, c in curves.items()
                if len(c["fps_per_scan"])
            },
            title="Lesion FROC (hit: IoU > 0.2)",
        ),
    }
    return metrics, case_table, comparison_table(methods), plots, histograms_to_arrays(scores)


def tabulate_findings(
    raw_scans: LazyImages,
    vertebra_maps: LazyImages,
    case_index: list[dict],
    candidate_rules: dict[str, dict[str, float]],
    vertebra_thresholds: dict[str, float],
    params: ReportingParams,
    *fused: LazyImages,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """What each method found in each test case: its lesions and a verdict per vertebra of the
    case's vertebra map (``findings.lesion_findings``, ``findings.vertebra_findings``; a
    vertebra is called by its score or by its height loss, ``reporting.call_grade``).

    Returns ``findings.csv`` (one row per lesion), ``vertebrae.csv`` (one row per vertebra and
    method) and both as one JSON document.
    """
    by_case = fused_by_case(fused)
    rules = {method: CandidateRule(**rule) for method, rule in candidate_rules.items()}
    lesions: list[dict] = []
    vertebrae: list[dict] = []
    for record in Progress(
        [r for r in case_index if r["split"] == "test"], desc="Findings", unit="case"
    ):
        case_id = record["case_id"]
        affine = np.asarray(record["affine"])
        scores = {m: load_voxels(load) for m, load in sorted(by_case.get(case_id, {}).items())}
        labels = np.asanyarray(vertebra_maps[case_id]().dataobj).astype(np.int16)
        convention = record["vertebra_convention"]
        for method, volume in scores.items():
            lesions += [
                {"case": case_id, "method": method, **row}
                for row in lesion_findings(
                    volume,
                    affine,
                    rules[method].threshold,
                    growth_decades=rules[method].growth_decades,
                    vertebra_labels=labels,
                    convention=convention,
                )
            ]
        if scores:
            mask = (
                np.asanyarray(raw_scans[record["mask"]]().dataobj) > 0 if record["mask"] else None
            )
            vertebrae += [
                {"case": case_id, **row}
                for row in vertebra_findings(
                    scores,
                    labels,
                    affine,
                    convention,
                    vertebra_thresholds,
                    call_grade=params.call_grade,
                    fracture_mask=mask,
                )
            ]
    lesion_table = pd.DataFrame(lesions, columns=list(LESION_COLUMNS))
    vertebra_table = pd.DataFrame(vertebrae, columns=list(VERTEBRA_COLUMNS))
    return lesion_table, vertebra_table, {"lesions": lesions, "vertebrae": vertebrae}


def dicom_segmentations(
    fracture_label_maps: LazyImages, findings: dict, case_index: list[dict], raw_dir: str
) -> tuple[dict[str, Callable[[], pydicom.Dataset]], dict[str, dict]]:
    """For the test cases read from a DICOM series folder: each method's fracture label map as
    a DICOM SEG that references the series (``dicom.fracture_segmentation``), and the
    method's findings for the case as JSON with the UIDs that join SEG and series.

    Both are keyed ``<method>/<case>``; a series without the UIDs a SEG must reference gets a
    warning and no SEG (its NIfTI label map stays).
    """
    series = {
        r["case_id"]: r for r in case_index if r["split"] == "test" and is_dicom_series(r["ct"])
    }
    headers = {
        case_id: read_series_headers(Path(raw_dir, r["ct"])) for case_id, r in series.items()
    }
    for case_id, slices in list(headers.items()):
        missing = missing_reference_uids(slices)
        if missing:
            logger.warning(
                "%s: the series has no %s; no DICOM SEG written for it.",
                Path(raw_dir, series[case_id]["ct"]),
                ", ".join(missing),
            )
            del headers[case_id]
    segmentations: dict[str, Callable[[], pydicom.Dataset]] = {}
    documents: dict[str, dict] = {}
    for key, load in sorted(fracture_label_maps.items()):
        method, case_id = key.split("/", 1)
        if case_id not in headers:
            continue
        uids = {"series_instance_uid": str(UID()), "sop_instance_uid": str(UID())}
        segmentations[key] = functools.partial(
            lambda load, **kwargs: fracture_segmentation(load(), **kwargs),
            load,
            slices=headers[case_id],
            algorithm=method,
            **uids,
        )
        documents[key] = {
            "case": case_id,
            "method": method,
            "source_series": {tag: str(headers[case_id][0].get(tag)) for tag in REFERENCE_UIDS},
            "segmentation": {**uids, "file": f"{key}.dcm"},
            "lesions": [
                r for r in findings["lesions"] if (r["case"], r["method"]) == (case_id, method)
            ],
            "vertebrae": [
                r for r in findings["vertebrae"] if (r["case"], r["method"]) == (case_id, method)
            ],
        }
    return segmentations, documents


def comparison_table(methods: dict[str, dict]) -> str:
    """Markdown table of the headline metrics, best PR-AUC first."""
    header = [
        "method",
        "PR-AUC",
        "precision",
        "recall",
        "F1",
        "Dice",
        "threshold (val)",
        *[f"FROC@{r}" for r in FROC_RATES],
        "vertebra AUC",
        "patient AUC",
        "bloat",
        "F1 best-on-test (optimistic)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in sorted(
        methods.items(), key=lambda item: -np.nan_to_num(item[1]["pr_auc"], nan=-1)
    ):
        froc = m["froc"]
        cells = [
            name,
            m["pr_auc"],
            m["precision"],
            m["recall"],
            m["f1"],
            m["dice"],
            m["threshold"],
            *[froc.get(str(r), float("nan")) for r in FROC_RATES],
            m.get("vertebra_auc", float("nan")),
            m.get("patient_auc", float("nan")),
            m["bloat"],
            m["best_f1_on_test"]["f1"],
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return (
            "n/a"
            if not np.isfinite(value)
            else (f"{value:.3g}" if abs(value) < 1e-3 and value else f"{value:.3f}")
        )
    return str(value)


def draw_cases(
    raw_scans: LazyImages,
    vertebra_maps: LazyImages,
    case_index: list[dict],
    thresholds: dict[str, float],
    findings: dict,
    params: ReportingParams,
    *fused: LazyImages,
) -> tuple[dict[str, Figure], dict[str, str]]:
    """Pictures of a few test cases: the vertebrae with the proposed method's verdicts, MIPs
    and slices through the largest fracture, 3D views; each title says what the proposed
    method found (``findings.case_summary``).

    Volumes are shown in the closest RAS orientation of each scan, with its voxel spacing.
    """
    verdicts = findings["vertebrae"]
    by_case = fused_by_case(fused)
    shown = [params.baseline, params.proposed]
    figures: dict[str, Figure] = {}
    views: dict[str, str] = {}
    for record in _pictured_cases(case_index, params.picture_cases):
        case_id = record["case_id"]
        (found,) = case_summary(
            [case_id], findings["lesions"], verdicts, [params.proposed], thresholds
        )
        caption = (
            f"{params.proposed}: lesions {found[f'{params.proposed}: lesions']}; called "
            f"fractured: {found[f'{params.proposed}: vertebrae']}; ground truth: "
            f"{found['ground truth']}"
        )
        ct = nib.as_closest_canonical(raw_scans[record["ct"]]())
        spacing = tuple(float(z) for z in ct.header.get_zooms()[:3])
        hu = np.asanyarray(ct.dataobj, dtype=np.float32)
        if record["mask"]:
            gt = np.asanyarray(nib.as_closest_canonical(raw_scans[record["mask"]]()).dataobj) > 0
        else:
            gt = np.zeros(hu.shape, bool)
        predictions = {
            m: np.asanyarray(
                nib.as_closest_canonical(by_case[case_id][m]()).dataobj, dtype=np.float32
            )
            for m in shown
            if m in by_case.get(case_id, {})
        }
        rows = [v for v in verdicts if v["case"] == case_id and v["method"] == params.proposed]
        if rows:
            labels = nib.as_closest_canonical(vertebra_maps[case_id]())
            figures[f"{case_id}_vertebrae"] = vertebra_findings_figure(
                hu,
                np.asanyarray(labels.dataobj),
                rows,
                spacing,
                title=f"{case_id}: vertebrae under {params.proposed}",
            )
        figures[f"{case_id}_mip"] = mip_comparison_figure(
            hu,
            gt,
            predictions,
            thresholds,
            spacing,
            title=f"{case_id}: {caption}",
        )
        figures[f"{case_id}_slices"] = slice_overlay_figure(
            hu,
            gt,
            predictions,
            thresholds,
            spacing,
            _focus(gt, predictions.get(params.proposed)),
            title=f"{case_id}: through the largest fracture (or the strongest prediction); "
            f"{caption}",
        )
        if params.proposed in predictions:
            views[case_id] = isosurface_html(
                gt,
                predictions[params.proposed],
                thresholds.get(params.proposed, 0.5),
                spacing,
                ct_hu=hu,
                title=f"{case_id}: ground truth (green) vs {params.proposed} (red)",
                full_html=False,
                pred_name=params.proposed,
            )
    return figures, views


def _pictured_cases(case_index: list[dict], count: int) -> list[dict]:
    """Test cases to draw: fractured ones first; scans without a mask too (predictions only)."""
    tests = [r for r in case_index if r["split"] == "test"]
    return sorted(tests, key=lambda r: not r["fracture_voxels"])[:count]


def draw_attention(
    model: dict,
    slices: dict[str, Callable[[], SliceStack]],
    case_index: list[dict],
    params: ReportingParams,
) -> dict[str, Figure]:
    """Attention-gate maps of the multi-task model on the slice with the most fracture pixels."""
    network = load_model_from_checkpoint(model)
    # as when the network is rebuilt: a checkpoint older than a field holds its default
    stride = TrainingParams.model_construct(**model["params"]).context_stride
    figures = {}
    for record in _pictured_cases(case_index, params.picture_cases):
        stack = slices[record["case_id"]]()
        index = (
            int(np.argmax(stack.masks.sum(axis=(1, 2))))
            if stack.masks is not None
            else len(stack.images) // 2
        )
        image, alphas = attention_maps(network, stack, index, context_stride=stride)
        figures[f"{record['case_id']}_attention"] = attention_figure(
            image,
            alphas,  # same (rows, columns) indexing as the slice, at coarser resolution
            spacing=tuple(float(s) for s in np.diag(stack.affine)[:2]),
            names=[f"gate {i + 1} ({a.shape[0]}x{a.shape[1]})" for i, a in enumerate(alphas)],
            title=f"{record['case_id']}: where the {stack.view} model looks (slice {index})",
        )
    return figures


def _focus(gt: np.ndarray, prediction: np.ndarray | None) -> tuple[int, ...]:
    """Centre of the largest fracture, else of the strongest prediction, else the middle."""
    labels, n = ndimage.label(gt)
    if n:
        largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
        point = ndimage.center_of_mass(labels == largest)
    elif prediction is not None and prediction.any():
        point = np.unravel_index(np.argmax(prediction), prediction.shape)
    else:
        point = np.array(gt.shape) // 2
    return tuple(int(c) for c in point)


def render_html_report(
    metrics: dict,
    findings: dict,
    case_index: list[dict],
    case_table: pd.DataFrame,
    comparison: str,
    plots: dict[str, bytes],
    case_figures: dict[str, bytes],
    attention_figures: dict[str, bytes],
    case_views: dict[str, str],
    params: ReportingParams,
) -> str:
    """One self-contained HTML page that opens with what was found in each test case
    (``findings.case_summary`` of the proposed method and the baseline), then every table,
    figure and 3D view."""
    dataset = metrics["dataset"]
    summary = case_summary(
        [r["case_id"] for r in case_index if r["split"] == "test"],
        findings["lesions"],
        findings["vertebrae"],
        [m for m in (params.proposed, params.baseline) if m in metrics["methods"]],
        {name: m["threshold"] for name, m in metrics["methods"].items()},
    )
    notes = [
        f"{dataset['cases']} labelled test cases, {dataset['voxels']:,} voxels, "
        f"{dataset['positive_voxels']:,} fracture voxels.",
        "Precision, recall, F1 and Dice are at the threshold chosen on validation cases; "
        "'best-on-test' F1 picks its threshold on the test cases themselves and is optimistic.",
        f"Proposed: {params.proposed}; thesis baseline: {params.baseline}. Bloat = predicted "
        "volume / ground-truth volume at the threshold.",
        "Lesions 'k marked of n candidates': of a method's n lesion candidates (which FROC "
        "ranks by their peak), the k whose peak reaches its validation voxel threshold, so "
        "that they are marked in its label map.",
        "Vertebrae are called fractured by their score (at the threshold chosen on validation "
        "cases)"
        + (
            f" or, 'by height', at Genant grade {params.call_grade} or above (a height loss of "
            f"{GRADE_LOSS_MIN[params.call_grade - 1]:.0%} or more, measured on the vertebra map)"
            if params.call_grade
            else ""
        )
        + "; the vertebra AUC ranks their scores.",
    ]
    return render_report(
        title="Vertebral fracture detection: proposed vs thesis baseline",
        findings=pd.DataFrame(summary),
        summary_table=comparison,
        figures={**plots, **case_figures, **attention_figures},
        case_tables=case_table,
        interactive_views=case_views,
        notes=notes,
    )
