"""Vertebra label conventions, body isolation and six-point morphometry."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from vertebral_fracture.vertebrae import (
    FOUND_BODIES,
    TOTALSEGMENTATOR_IDS,
    body_morphometry,
    found_body_ids,
    fractured_vertebrae,
    genant_grade,
    level_names,
    measure_vertebrae,
    unknown_labels,
    vertebra_score,
    vertebra_scores,
    vertebral_body,
)

DATA = Path(__file__).parent / "data"
REAL_VERTEBRA = DATA / "real_vertebra"
REAL_CT_LABELS = DATA / "real_ct" / "lumbar_ct_vertebrae.nii.gz"


def synthetic_vertebra(
    *, anterior_mm: float = 25.0, posterior_mm: float = 25.0, tilt_deg: float = 0.0
) -> np.ndarray:
    """A 1 mm RAS vertebra: a 40 x 30 mm body (height falling linearly from the posterior
    to the anterior wall) and a closed ring arch behind it around an 16 mm canal."""
    x, y, z = np.meshgrid(
        np.arange(80) - 40.0, np.arange(90) - 45.0, np.arange(60) - 30.0, indexing="ij"
    )
    if tilt_deg:  # rotate about the left-right axis
        t = np.deg2rad(tilt_deg)
        y, z = np.cos(t) * y - np.sin(t) * z, np.sin(t) * y + np.cos(t) * z
    depth = (y - 0.0) / 30.0  # 0 at the posterior wall (y = 0), 1 at the anterior (y = 30)
    height = posterior_mm + (anterior_mm - posterior_mm) * depth
    body = (np.abs(x) <= 20) & (y >= 0) & (y <= 30) & (z >= -12.5) & (z <= -12.5 + height)
    ring = np.hypot(x, y + 8.0)  # the canal (radius 8 mm) touches the posterior wall
    arch = (ring >= 8.0) & (ring <= 12.0) & (y < 0) & (np.abs(z) <= 6)
    return body | arch


def test_conventions_name_the_levels_of_both_label_sets():
    total, verse = level_names("totalsegmentator"), level_names("verse")
    assert (total[26], total[27], total[31], total[32], total[43], total[44], total[50]) == (
        "S1",
        "L5",
        "L1",
        "T12",
        "T1",
        "C7",
        "C1",
    )
    assert (verse[1], verse[8], verse[20], verse[24], verse[25], verse[28]) == (
        "C1",
        "T1",
        "L1",
        "L5",
        "L6",
        "T13",
    )
    assert TOTALSEGMENTATOR_IDS["L1"] == 31
    assert unknown_labels(np.array([0, 31, 26, 25, 99]), "totalsegmentator") == [25, 99]
    with pytest.raises(ValueError, match="unknown vertebra label convention"):
        level_names("nnunet")


@pytest.mark.parametrize(
    ("ratio", "grade"),
    [(0.9, 0), (0.81, 0), (0.8, 1), (0.78, 1), (0.75, 2), (0.7, 2), (0.61, 2), (0.6, 3), (0.5, 3)],
)
def test_genant_grade_follows_the_height_loss(ratio, grade):
    assert genant_grade(ratio) == grade


def test_genant_grade_of_an_unmeasured_body_is_none():
    assert genant_grade(float("nan")) is None


def test_the_body_is_what_lies_in_front_of_the_canal():
    vertebra = synthetic_vertebra()
    body = vertebral_body(vertebra, np.eye(4))
    y = np.nonzero(body)[1] - 45.0
    assert body.any() and y.min() >= 0  # no arch voxel
    assert body.sum() > 0.97 * (vertebra & (np.arange(90)[None, :, None] >= 45)).sum()


def test_intact_body_heights_are_equal_and_measured_in_mm():
    m = body_morphometry(vertebral_body(synthetic_vertebra(), np.eye(4)), np.eye(4))
    for height in (m.anterior_mm, m.middle_mm, m.posterior_mm):
        assert height == pytest.approx(26.0, abs=1.01)  # 25 mm span + one voxel
    assert m.height_ratio > 0.95 and m.grade == 0


def test_a_wedge_loses_anterior_height_and_is_graded():
    m = body_morphometry(vertebral_body(synthetic_vertebra(anterior_mm=14.0), np.eye(4)), np.eye(4))
    assert m.anterior_mm < m.middle_mm < m.posterior_mm
    assert m.posterior_mm - m.anterior_mm > 7.0
    assert m.height_ratio < 0.75 and m.grade >= 2


def test_morphometry_does_not_depend_on_the_storage_orientation_or_spacing():
    vertebra = synthetic_vertebra(anterior_mm=18.0)
    ras = body_morphometry(vertebral_body(vertebra, np.eye(4)), np.eye(4))
    # the same voxels stored LPS at 0.5 x 0.5 x 2 mm: flip x and y, resample z
    stored = vertebra[::-1, ::-1, ::2].repeat(2, axis=0).repeat(2, axis=1)
    affine = np.diag([-0.5, -0.5, 2.0, 1.0])
    affine[:3, 3] = [79.25, 89.25, 0.0]  # the two halves of voxel 79 centre at 79.25, 78.75
    lps = body_morphometry(vertebral_body(stored, affine), affine)
    for a, b in zip(
        (ras.anterior_mm, ras.middle_mm, ras.posterior_mm),
        (lps.anterior_mm, lps.middle_mm, lps.posterior_mm),
        strict=True,
    ):
        assert a == pytest.approx(b, abs=2.0)  # 2 mm slices: one voxel
    assert np.allclose(ras.centroid_mm, lps.centroid_mm, atol=1.0)


def test_a_sagittal_acquisition_with_thick_slices_finds_the_body():
    """3 mm slices along x (as VerSe's sagittal scans): the canal is still found."""
    vertebra = synthetic_vertebra(anterior_mm=14.0)
    thick = vertebra[::3]
    affine = np.diag([3.0, 1.0, 1.0, 1.0])
    body = vertebral_body(thick, affine)
    assert (np.nonzero(body)[1] >= 45).all()  # no arch voxel
    m = body_morphometry(body, affine)
    assert m.posterior_mm - m.anterior_mm > 7.0 and m.grade >= 2


def test_a_tilted_spine_measures_true_heights():
    upright = body_morphometry(vertebral_body(synthetic_vertebra(), np.eye(4)), np.eye(4))
    tilt = np.deg2rad(15.0)
    tilted = synthetic_vertebra(tilt_deg=15.0)
    axis = np.array([0.0, np.sin(tilt), np.cos(tilt)])  # the body's own cranio-caudal axis
    m = body_morphometry(vertebral_body(tilted, np.eye(4)), np.eye(4), axis)
    assert m.middle_mm == pytest.approx(upright.middle_mm, abs=1.5)
    assert m.height_ratio > 0.9


def test_the_real_vertebra_body_matches_its_manual_subregions():
    """VerSe L3 (1.5 mm): the canal split reproduces the corpus subregions (49, 50)."""
    load = lambda name: nib.as_closest_canonical(nib.load(REAL_VERTEBRA / name))  # noqa: E731
    vert = load("sub-ct_seg-vert_label-22_msk.nii.gz")
    sub = np.asanyarray(load("sub-ct_seg-subreg_label-22_msk.nii.gz").dataobj)
    l3 = np.asanyarray(vert.dataobj) == 22
    truth = l3 & np.isin(sub, (49, 50))
    body = vertebral_body(l3, vert.affine)
    assert (body & truth).sum() / (body | truth).sum() > 0.9
    m = body_morphometry(body, vert.affine)
    assert 22.0 < m.posterior_mm < 36.0 and m.height_ratio > 0.8 and m.grade == 0


def test_measure_vertebrae_names_the_levels_of_the_real_ct():
    image = nib.load(REAL_CT_LABELS)
    labels = np.asanyarray(image.dataobj).astype(np.int16)
    rows = measure_vertebrae(labels, image.affine, "totalsegmentator")
    assert [r["vertebra"] for r in rows] == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    z = [r["z_mm"] for r in rows]
    assert z == sorted(z, reverse=True)  # from the skull down
    lumbar = [r for r in rows if r["vertebra"].startswith("L")]
    assert all(r["complete"] for r in lumbar)
    assert all(15.0 < r["posterior_mm"] < 40.0 for r in lumbar)


def test_found_bodies_are_numbered_or_named_and_never_graded():
    assert found_body_ids(3) == [1, 2, 3]
    ids = found_body_ids(3, ["L5", "S1", None])  # a body below the sacrum is left out
    assert ids == [127, 126, 0]
    names = level_names(FOUND_BODIES)
    assert (names[1], names[127], names[126], names[132]) == ("V1", "L5", "S1", "T12")
    labels = np.zeros((40, 40, 90), np.int16)
    for label, z in ((130, 40), (129, 10)):  # L2 over L3, as blocks
        labels[10:30, 10:30, z : z + 25] = label
    rows = measure_vertebrae(labels, np.eye(4), FOUND_BODIES)
    assert [r["vertebra"] for r in rows] == ["L2", "L3"]
    assert all(r["complete"] and r["grade"] is None for r in rows)


def test_vertebra_score_averages_the_top_volume():
    scores = np.zeros(1000)
    scores[:10] = 1.0
    assert vertebra_score(scores, voxel_mm3=5.0) == pytest.approx(1.0)  # top 10 voxels
    assert vertebra_score(scores, voxel_mm3=1.0) == pytest.approx(0.2)  # top 50
    assert vertebra_score(np.zeros(0), voxel_mm3=1.0) == 0.0


def test_scores_and_truth_per_vertebra_reach_one_voxel_around_the_bone():
    labels = np.zeros((20, 20, 40), np.int16)
    labels[5:15, 5:15, 2:12] = 31  # L1
    labels[5:15, 5:15, 20:30] = 30  # L2
    scores = np.zeros(labels.shape, np.float32)
    scores[10, 10, 12] = 0.9  # just above L1's top, in its one-voxel shell
    mask = ndimage.binary_dilation(scores > 0, iterations=2)
    by_label = vertebra_scores(labels, scores, voxel_mm3=50.0)
    assert by_label[31] == pytest.approx(0.9) and by_label[30] == 0.0
    assert fractured_vertebrae(labels, mask, voxel_mm3=1.0) == {30: False, 31: True}
