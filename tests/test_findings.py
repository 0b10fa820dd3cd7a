"""Lesion and vertebra findings, the validation operating point, vertebra/patient metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vertebral_fracture.findings import (
    case_summary,
    detection_by_kind,
    lesion_findings,
    vertebra_findings,
    vertebra_metrics,
    youden_threshold,
)
from vertebral_fracture.vertebrae import TOTALSEGMENTATOR_IDS


def _spine() -> tuple[np.ndarray, np.ndarray]:
    """Three box vertebrae (L1-L3, 2 mm voxels) stacked along z and their affine."""
    labels = np.zeros((20, 20, 60), np.int16)
    for k, level in enumerate(("L3", "L2", "L1")):
        labels[4:16, 4:16, 4 + 18 * k : 16 + 18 * k] = TOTALSEGMENTATOR_IDS[level]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-20.0, 10.0, 100.0]
    return labels, affine


def test_lesions_are_components_in_world_coordinates_with_their_level():
    labels, affine = _spine()
    scores = np.zeros(labels.shape, np.float32)
    scores[8:10, 8:10, 40:42] = 0.9  # inside L1 (z 40-51)
    scores[0:2, 0:2, 20:21] = 0.5  # off the spine
    rows = lesion_findings(
        scores, affine, 0.4, vertebra_labels=labels, convention="totalsegmentator"
    )
    assert [r["lesion"] for r in rows] == [1, 2]
    first, second = rows
    assert first["vertebra"] == "L1" and second["vertebra"] == ""
    assert first["max_probability"] == pytest.approx(0.9)
    assert first["volume_mm3"] == pytest.approx(8 * 8.0)
    # voxel (8.5, 8.5, 40.5) -> world
    assert (first["x_mm"], first["y_mm"], first["z_mm"]) == (-3.0, 27.0, 181.0)
    assert (first["box_x0_mm"], first["box_x1_mm"]) == (-4.0, -2.0)
    assert lesion_findings(scores, affine, 0.95) == []


def test_vertebra_findings_score_call_and_truth_per_method():
    labels, affine = _spine()
    fused = np.zeros(labels.shape, np.float32)
    fused[6:14, 6:14, 40:46] = 0.8  # L1
    mask = fused > 0
    rows = vertebra_findings(
        {"proposed": fused, "other": np.zeros_like(fused)},
        labels,
        affine,
        "totalsegmentator",
        {"proposed": 0.5, "other": 0.5},
        fracture_mask=mask,
    )
    assert [(r["method"], r["vertebra"]) for r in rows] == [
        (m, level) for m in ("proposed", "other") for level in ("L1", "L2", "L3")
    ]
    proposed = {r["vertebra"]: r for r in rows if r["method"] == "proposed"}
    assert proposed["L1"]["fractured"] == 1 and proposed["L1"]["ground_truth"] == 1
    assert proposed["L1"]["called_by"] == "score"
    assert proposed["L2"]["fractured"] == 0 and proposed["L2"]["ground_truth"] == 0
    assert proposed["L2"]["called_by"] == ""
    assert proposed["L1"]["fracture_probability"] == pytest.approx(0.8)
    assert all(r["fractured"] == 0 for r in rows if r["method"] == "other")
    unlabelled = vertebra_findings(
        {"proposed": fused}, labels, affine, "totalsegmentator", {"proposed": 0.5}
    )
    assert all(r["ground_truth"] is None for r in unlabelled)


def _wedged_l2() -> tuple[np.ndarray, np.ndarray]:
    """The spine of ``_spine`` with L2's top lowered anteriorly: a wedge of grade 2."""
    labels, affine = _spine()
    top = np.flatnonzero((labels == TOTALSEGMENTATOR_IDS["L2"]).any(axis=(0, 1))).max()
    for y in range(4, 16):  # y grows anteriorly (RAS)
        lowered = round((y - 4) / 11 * 5)
        labels[4:16, y, top - lowered + 1 : top + 1] = 0
    return labels, affine


def test_a_vertebra_that_lost_height_is_called_whatever_its_score():
    labels, affine = _wedged_l2()
    quiet = {"proposed": np.zeros(labels.shape, np.float32)}  # the model sees nothing
    rows = vertebra_findings(quiet, labels, affine, "totalsegmentator", {"proposed": 0.5})
    l2 = {r["vertebra"]: r for r in rows}["L2"]
    assert l2["grade"] == 2 and l2["fractured"] == 0 and l2["called_by"] == ""
    for call_grade, called in ((1, True), (2, True), (3, False)):
        rows = vertebra_findings(
            quiet, labels, affine, "totalsegmentator", {"proposed": 0.5}, call_grade=call_grade
        )
        by_level = {r["vertebra"]: r for r in rows}
        assert by_level["L2"]["fractured"] == int(called)
        assert by_level["L2"]["called_by"] == ("height" if called else "")
        assert by_level["L1"]["fractured"] == by_level["L3"]["fractured"] == 0
    scored = {"proposed": np.where(labels == TOTALSEGMENTATOR_IDS["L2"], 0.9, 0.0)}
    rows = vertebra_findings(
        scored, labels, affine, "totalsegmentator", {"proposed": 0.5}, call_grade=1
    )
    assert {r["vertebra"]: r for r in rows}["L2"]["called_by"] == "score+height"
    with pytest.raises(ValueError, match="Genant grade"):
        vertebra_findings(
            quiet, labels, affine, "totalsegmentator", {"proposed": 0.5}, call_grade=0
        )


def test_youden_threshold_separates_the_validation_vertebrae():
    assert youden_threshold([0.1, 0.2, 0.7, 0.9], [False, False, True, True], 0.5) == 0.7
    assert youden_threshold([0.1, 0.2], [False, False], 0.33) == 0.33  # one class


def test_vertebra_and_patient_metrics():
    def row(case, p, truth, height=False):
        called = p >= 0.5 or height
        return {"case": case, "fracture_probability": p, "fractured": called, "ground_truth": truth}

    rows = [
        row("a", 0.9, 1),
        row("a", 0.2, 0),
        row("b", 0.6, 0),
        row("b", 0.1, 0),
        row("c", 0.3, 1),
        row("c", 0.05, None),  # unlabelled
    ]
    patients = {"a": True, "b": False, "c": True, "d": True}  # d: fracture off every vertebra
    m = vertebra_metrics(rows, threshold=0.5, patients=patients)
    # pairs ranked right: 0.9 above all three negatives, 0.3 above 0.2 and 0.1
    assert m["vertebra_auc"] == pytest.approx(5 / 6)
    assert m["vertebra_sensitivity"] == 0.5 and m["vertebra_specificity"] == pytest.approx(2 / 3)
    # the call counts, height included; the AUC stays the score's
    by_height = [row("c", 0.3, 1, height=True) if r is rows[4] else r for r in rows]
    m_height = vertebra_metrics(by_height, threshold=0.5, patients=patients)
    assert m_height["vertebra_sensitivity"] == 1.0
    assert m_height["vertebra_auc"] == m["vertebra_auc"]
    # scans: a (0.9, fractured), b (0.6, not), c (0.3, fractured), d (0, fractured)
    assert m["patient_auc"] == pytest.approx(1 / 3)
    assert (m["vertebrae"], m["fractured_vertebrae"], m["patients"]) == (5, 2, 4)
    assert math.isnan(vertebra_metrics(rows[2:4], 0.5, {"b": False})["vertebra_auc"])


def test_detection_by_kind_ranks_each_kind_against_intact_vertebrae():
    def row(case, vertebra, p, truth):
        return {
            "case": case,
            "vertebra": vertebra,
            "fracture_probability": p,
            "fractured": int(p >= 0.5),
            "ground_truth": truth,
        }

    rows = [
        row("a", "L1", 0.9, 1),  # compression, found
        row("a", "L2", 0.2, 1),  # burst, missed, below one intact vertebra
        row("a", "L3", 0.3, 0),
        row("b", "L1", 0.1, 0),
        row("b", "L2", 0.7, 1),  # compression, found
        row("b", "L3", 0.05, None),  # unlabelled: not intact
        row("b", "L4", 0.4, 1),  # fractured but not in the manifest: no kind
    ]
    kinds = {("a", "L1"): "compression", ("a", "L2"): "burst", ("b", "L2"): "compression"}
    figures = detection_by_kind(rows, kinds)
    assert set(figures) == {"burst", "compression"}
    assert figures["compression"] == {"n": 2, "sensitivity": 1.0, "auc": 1.0}
    assert figures["burst"]["n"] == 1 and figures["burst"]["sensitivity"] == 0.0
    assert figures["burst"]["auc"] == pytest.approx(0.5)  # above 0.1, below 0.3
    assert math.isnan(detection_by_kind(rows[:2], kinds)["compression"]["auc"])  # no intact


def test_case_summary_answers_what_was_found():
    lesions = [
        {"case": "a", "method": "p", "volume_mm3": 420.0, "vertebra": "L1", "max_probability": 0.9},
        {"case": "a", "method": "p", "volume_mm3": 8.0, "vertebra": "", "max_probability": 0.4},
        {"case": "c", "method": "p", "volume_mm3": 30.0, "vertebra": "T12", "max_probability": 0.2},
    ]
    vertebrae = [
        {"case": "a", "method": "p", "vertebra": "L1", "fracture_probability": 0.9,
         "fractured": 1, "called_by": "score+height", "grade": 2, "ground_truth": 1},
        {"case": "a", "method": "p", "vertebra": "L2", "fracture_probability": 0.1,
         "fractured": 0, "called_by": "", "grade": 0, "ground_truth": 0},
        {"case": "a", "method": "p", "vertebra": "L3", "fracture_probability": 0.01,
         "fractured": 1, "called_by": "height", "grade": 1, "ground_truth": 0},
    ]  # fmt: skip
    (a, b, c) = case_summary(["a", "b", "c"], lesions, vertebrae, ["p"], {"p": 0.5})
    assert a == {
        "case": "a",
        "ground truth": "L1",
        "p: vertebrae": "L1 (0.9, grade 2), L3 (0.01, grade 1, by height)",
        "p: lesions": "1 marked of 2 candidates; strongest 420 mm³ at L1 (max 0.9)",
    }
    assert b["p: lesions"] == "none" and b["ground truth"] == "-"
    assert c["p: lesions"] == "0 marked of 1 candidate; strongest 30 mm³ at T12 (max 0.2)"
