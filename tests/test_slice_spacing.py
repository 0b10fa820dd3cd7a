"""Tests for benchmarks/slice_spacing.py: the same phantoms with coarser slices."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import benchmark_script
from tests.test_ood_factors import PARAMS


@pytest.fixture(scope="module")
def slice_spacing():
    return benchmark_script("slice_spacing")


def _ramp(shape=(4, 5, 12), spacing=(0.8, 0.8, 1.25)) -> nib.Nifti1Image:
    """A RAS volume whose value is its fine slice index."""
    data = np.broadcast_to(np.arange(shape[2], dtype=np.float32), shape).copy()
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-10.0, 20.0, 30.0)
    return nib.Nifti1Image(data, affine)


def test_a_coarse_slice_is_the_mean_of_the_fine_ones_it_covers(slice_spacing):
    image = _ramp()
    coarse = slice_spacing.coarser_slices(image, 2.5)
    assert coarse.shape == (4, 5, 6)
    np.testing.assert_allclose(coarse.dataobj[0, 0], [0.5, 2.5, 4.5, 6.5, 8.5, 10.5])
    affine = coarse.affine
    assert affine[2, 2] == 2.5
    # the first coarse slice is centred between fine slices 0 and 1, in world mm
    assert affine[2, 3] == pytest.approx(30.0 + 0.625)
    # a fractional factor: 3.5 mm over 1.25 mm slices shares the fine slices at its edges
    thick = slice_spacing.coarser_slices(image, 3.5)
    assert thick.shape[2] == 4
    np.testing.assert_allclose(thick.dataobj[0, 0, 0], (0 + 1 + 2 * 0.8) / 2.8, rtol=1e-6)
    with pytest.raises(ValueError, match="finer"):
        slice_spacing.coarser_slices(image, 1.0)


def test_coarser_slices_are_the_same_in_any_stored_orientation(slice_spacing):
    ras = _ramp()
    stored = nib.as_closest_canonical(ras)  # identity for RAS; flip the array to store LPS-like
    flipped = np.flip(np.asarray(stored.dataobj), axis=(0, 1)).copy()
    lps_affine = stored.affine @ np.array(
        [[-1, 0, 0, 3], [0, -1, 0, 4], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float
    )
    lps = nib.Nifti1Image(flipped, lps_affine)
    from_lps, from_ras = (slice_spacing.coarser_slices(im, 2.5) for im in (lps, ras))
    np.testing.assert_allclose(from_lps.dataobj, from_ras.dataobj)
    np.testing.assert_allclose(from_lps.affine, from_ras.affine)


def test_a_case_is_written_with_its_thin_fracture_kept(slice_spacing, tmp_path):
    ct = nib.Nifti1Image(np.full((4, 5, 12), 100, np.int16), _ramp().affine)
    mask = np.zeros((4, 5, 12), np.uint8)
    mask[1:3, 1:3, 5] = 1  # a 1-slice break: a third of a 3.75 mm slice
    nib.save(ct, tmp_path / "c_ct.nii.gz")
    nib.save(nib.Nifti1Image(mask, ct.affine), tmp_path / "c_fracture.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    slice_spacing.coarsen_case(
        "c", tmp_path / "c_ct.nii.gz", tmp_path / "c_fracture.nii.gz", out, 3.75
    )
    coarse_ct = nib.load(out / "c_ct.nii.gz")
    coarse_mask = np.asarray(nib.load(out / "c_fracture.nii.gz").dataobj)
    assert coarse_ct.shape == coarse_mask.shape == (4, 5, 4)
    assert coarse_ct.header.get_zooms()[2] == pytest.approx(3.75)
    assert np.asarray(coarse_ct.dataobj).min() == 100  # flat HU stay flat
    assert coarse_mask[1:3, 1:3, 1].all() and coarse_mask.sum() == 4  # slice 5 is in slice 1


def test_the_fine_set_has_the_out_of_domain_field_on_canonical_slices(slice_spacing):
    params = {**PARAMS, "data_processing": {"spacing_mm": [1.25, 1.25, 1.25]}}
    spec = slice_spacing.fine_slice_set(params, n_cases=4, seed=9191)
    assert spec["shape"] == [176, 176, 112]  # 40 slices of 3.5 mm = 112 of 1.25 mm
    assert spec["spacing_mm"] == [0.8, 0.8, 1.25]
    assert spec["seed"] == 9191 and spec["n_cases"] == 4
    assert spec["appearance"] == PARAMS["phantoms"]["appearance"]  # the training appearance
