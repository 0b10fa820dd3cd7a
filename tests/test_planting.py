"""Fractures planted into the real test vertebra (tests/data/real_vertebra)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vertebral_fracture.planting import plant_compression, planted_cases

DATA = Path(__file__).parent / "data" / "real_vertebra"
SCAN = DATA / "sub-ct_label-22_ct.nii.gz"
VERTEBRAE = DATA / "sub-ct_seg-vert_label-22_msk.nii.gz"
SUBREGIONS = DATA / "sub-ct_seg-subreg_label-22_msk.nii.gz"
L3, BODY = 22, (49, 50)


@pytest.fixture(scope="module")
def vertebra() -> tuple[np.ndarray, np.ndarray]:
    """Canonical HU and the L3 body mask."""
    hu = np.asanyarray(nib.as_closest_canonical(nib.load(SCAN)).dataobj)
    vert, sub = (
        np.asanyarray(nib.as_closest_canonical(nib.load(p)).dataobj)
        for p in (VERTEBRAE, SUBREGIONS)
    )
    return hu, (vert == L3) & np.isin(sub, BODY)


def _heights(body: np.ndarray) -> np.ndarray:
    """(X, Y) body height (voxels) per column."""
    return body.sum(axis=2)


def test_wedge_lowers_the_anterior_upper_endplate_only(vertebra):
    hu, body = vertebra
    planted, mask = plant_compression(hu, body, height_loss=0.4, shape="wedge")
    assert planted.shape == hu.shape and planted.dtype == np.int16
    zs = np.nonzero(mask)[2]
    body_z = np.nonzero(body)[2]
    centre = (body_z.min() + body_z.max()) / 2
    assert mask.any() and np.mean(zs > centre) > 0.95  # beneath the upper endplate
    ys = np.nonzero(mask)[1]
    body_y = np.nonzero(body)[1]
    assert ys.min() > body_y.min() + 0.3 * (body_y.max() - body_y.min())  # posterior wall intact
    # nothing changes outside the body's columns: real anatomy around it stays as scanned
    columns = body.any(axis=2)
    np.testing.assert_array_equal(planted[~columns], hu[~columns])
    # the anterior wall lost height: its collapsed endplate (the band's top) sits lower
    front = body & (np.arange(hu.shape[1])[None, :, None] > np.percentile(body_y, 85))
    height = np.ptp(body_z) + 1
    collapsed_top = np.nonzero(mask & front.any(axis=2)[:, :, None])[2].max()
    assert collapsed_top <= np.nonzero(front)[2].max() - 0.25 * height


def test_biconcave_collapses_both_endplates_and_crush_one(vertebra):
    hu, body = vertebra
    body_z = np.nonzero(body)[2]
    centre = (body_z.min() + body_z.max()) / 2
    _, biconcave = plant_compression(hu, body, height_loss=0.3, shape="biconcave")
    _, crush = plant_compression(hu, body, height_loss=0.3, shape="crush")
    assert (np.nonzero(biconcave)[2] > centre).any() and (np.nonzero(biconcave)[2] < centre).any()
    assert np.mean(np.nonzero(crush)[2] > centre) > 0.95
    # a crush lowers nearly the whole endplate: its band spans most of the body's columns
    assert crush.any(axis=2).sum() > 0.6 * body.any(axis=2).sum()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height_loss": 0.3, "shape": "burst"}, "unknown compression shape"),
        ({"height_loss": 1.2}, "height_loss"),
    ],
)
def test_bad_plants_are_refused(vertebra, kwargs, message):
    hu, body = vertebra
    with pytest.raises(ValueError, match=message):
        plant_compression(hu, body, **kwargs)


def test_planted_cases_keep_the_scans_orientation_and_add_an_intact_case():
    cases = planted_cases(
        SCAN,
        VERTEBRAE,
        SUBREGIONS,
        vertebra=L3,
        body_subregions=BODY,
        plants=[{"shape": "wedge", "height_loss": 0.3}],
    )
    assert set(cases) == {"intact_ct", "intact_fracture", "wedge_30_ct", "wedge_30_fracture"}
    source = nib.load(SCAN)
    for image in cases.values():
        assert image.shape == source.shape  # stored like the scan (PIR), not canonical
        np.testing.assert_allclose(image.affine, source.affine, atol=1e-5)
    np.testing.assert_array_equal(
        np.asanyarray(cases["intact_ct"].dataobj), np.asanyarray(source.dataobj)
    )
    assert not np.asanyarray(cases["intact_fracture"].dataobj).any()
    assert np.asanyarray(cases["wedge_30_fracture"].dataobj).any()


def test_labels_on_another_grid_are_refused(tmp_path):
    other = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4)), other)
    with pytest.raises(ValueError, match="grid"):
        planted_cases(SCAN, other, SUBREGIONS, vertebra=L3, body_subregions=BODY, plants=[])
