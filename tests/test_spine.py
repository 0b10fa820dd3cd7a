"""The spine locator finds the vertebral column on phantoms, behind distractors and on real CT."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tests.conftest import REAL_CT, REAL_CT_VERTEBRAE
from vertebral_fracture.phantoms import PhantomSetParams, Tissue, generate_phantom_set
from vertebral_fracture.spine import locate_spine

BODY_TISSUES = (Tissue.TRABECULAR, Tissue.OSTEOPOROTIC_TRABECULAR)
VERTEBRA_LABELS = range(26, 34)  # TotalSegmentator: S1 .. T11


@pytest.fixture(scope="module")
def phantoms() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(HU, tissue labels, spacing) of canonical phantoms stored in several orientations."""
    params = PhantomSetParams(
        n_cases=4,
        shape=(72, 72, 72),
        spacing_mm=(1.0, 1.0, 1.25),
        seed=3,
        orientations=["RAS", "LPS", "PIR"],
    )
    cases = []
    for phantom in generate_phantom_set(params):
        ct = nib.as_closest_canonical(phantom.ct)
        labels = np.asanyarray(nib.as_closest_canonical(phantom.tissue_labels).dataobj)
        cases.append((np.asanyarray(ct.dataobj), labels, np.array(ct.header.get_zooms()[:3])))
    return cases


def _body_errors_mm(spine: np.ndarray, labels: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) of the located centre to the centroid of vertebral-body marrow, in the
    slices through a vertebral body (at least half the largest marrow area)."""
    body = np.isin(labels, BODY_TISSUES)
    area = body.sum(axis=(0, 1))
    errors = []
    for z in np.flatnonzero(area >= area.max() / 2):
        centroid = np.array(ndimage.center_of_mass(body[:, :, z]))
        errors.append(np.hypot(*((spine[z] - centroid) * spacing[:2])))
    return np.array(errors)


def test_centre_lies_on_the_vertebral_bodies_of_phantoms(phantoms):
    for hu, labels, spacing in phantoms:
        spine = locate_spine(hu, spacing)
        assert spine.shape == (hu.shape[2], 2) and spine.dtype == np.float32
        assert _body_errors_mm(spine, labels, spacing).max() < 12.0


@pytest.mark.parametrize(
    "distractor",
    [
        "aorta",
        pytest.param(
            "pelvis",
            marks=pytest.mark.xfail(
                strict=True, reason="known gap: a solid 700 HU lateral block pulls the tracker"
            ),
        ),
    ],
)
def test_centre_stays_on_the_spine_next_to_a_bright_distractor(phantoms, distractor):
    hu, labels, spacing = phantoms[0]
    body = np.isin(labels, BODY_TISSUES)
    bx, by, _ = (np.mean(axis) for axis in np.nonzero(body))
    x, y = np.ogrid[: hu.shape[0], : hu.shape[1]]
    with_distractor = hu.copy()
    if distractor == "aorta":  # 25 mm contrast-filled tube, anterior-left of the body, all z
        front = np.nonzero(body)[1].max()
        tube = ((x - bx - 20 / spacing[0]) * spacing[0]) ** 2 + (
            (y - front - 14 / spacing[1]) * spacing[1]
        ) ** 2 <= 12.5**2
        with_distractor[tube] = 300
    else:  # a dense iliac-wing-like block lateral to the spine over the lower third
        block = (np.abs(x - bx) * spacing[0] > 22) & (np.abs(y - by) * spacing[1] < 15)
        with_distractor[:, :, : hu.shape[2] // 3][np.broadcast_to(block, hu.shape[:2])] = 700
    errors = _body_errors_mm(locate_spine(with_distractor, spacing), labels, spacing)
    assert errors.max() < 12.0


@pytest.mark.xfail(
    strict=True,
    reason="known gap: in the lowest S1 slices the centre follows the sacrum backwards (36 mm)",
)
def test_centre_lies_in_the_labelled_vertebrae_of_a_real_ct():
    ct = nib.load(REAL_CT)
    vertebrae = np.isin(np.asanyarray(nib.load(REAL_CT_VERTEBRAE).dataobj), VERTEBRA_LABELS)
    spacing = np.array(ct.header.get_zooms()[:3])
    spine = locate_spine(np.asanyarray(ct.dataobj), spacing)
    distances = []
    for z in np.flatnonzero(vertebrae.any(axis=(0, 1))):
        outside = ndimage.distance_transform_edt(~vertebrae[:, :, z], sampling=spacing[:2])
        x, y = np.round(spine[z]).astype(int)
        distances.append(outside[x, y])
    assert np.max(distances) <= 10.0
