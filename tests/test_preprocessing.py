"""Canonical resampling, windowing and the native-grid round trip."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tests.conftest import REAL_CT, centre_spine, make_image, reorient
from vertebral_fracture.preprocessing import (
    canonical_grid,
    resample,
    to_canonical,
    to_native,
    window,
)
from vertebral_fracture.slicing import VIEW_AXES, assemble_volume, extract_slices


@pytest.mark.parametrize("axcodes", ["LPS", "PIR", "SAL"])
def test_same_anatomy_in_any_orientation_gives_same_canonical_array(spine_like_ct, axcodes):
    ct, mask = spine_like_ct
    reference_ct, reference_mask = to_canonical(ct, mask, (1.0, 1.0, 1.0))
    other_ct, other_mask = to_canonical(
        reorient(ct, axcodes), reorient(mask, axcodes), (1.0, 1.0, 1.0)
    )
    assert "".join(nib.aff2axcodes(other_ct.affine)) == "RAS"
    np.testing.assert_allclose(other_ct.affine, reference_ct.affine, atol=1e-6)
    np.testing.assert_array_equal(other_ct.get_fdata(), reference_ct.get_fdata())
    np.testing.assert_array_equal(other_mask.get_fdata(), reference_mask.get_fdata())


def test_canonical_grid_has_target_spacing_and_covers_the_scan(spine_like_ct):
    ct, _ = spine_like_ct
    affine, shape = canonical_grid(ct.affine, ct.shape, (1.25, 1.25, 1.25))
    np.testing.assert_allclose(np.diag(affine)[:3], 1.25)
    extent = np.array(ct.shape) * np.array(ct.header.get_zooms()[:3])
    assert np.all(np.abs(np.array(shape) * 1.25 - extent) <= 2 * 1.6)


def test_resampling_keeps_mask_volume(spine_like_ct):
    ct, mask = spine_like_ct
    native_mm3 = mask.get_fdata().sum() * np.prod(mask.header.get_zooms()[:3])
    for spacing in [(1.0, 1.0, 1.0), (0.7, 0.7, 0.7), (1.5, 1.5, 1.5)]:
        _, canonical_mask = to_canonical(ct, mask, spacing)
        data = np.asanyarray(canonical_mask.dataobj)
        assert set(np.unique(data)) <= {0, 1}
        canonical_mm3 = data.sum() * np.prod(spacing)
        assert canonical_mm3 == pytest.approx(native_mm3, rel=0.35)


def test_ct_stays_in_hounsfield_units(spine_like_ct):
    ct, mask = spine_like_ct
    canonical_ct, _ = to_canonical(ct, mask, (1.0, 1.0, 1.0))
    data = np.asanyarray(canonical_ct.dataobj)
    assert data.dtype == np.int16
    assert data.min() >= -1024 and 200 < data.max() < 300


def test_window_maps_bone_window_to_unit_range():
    hu = np.array([-2000, -500, 400, 1300, 3000], dtype=np.int16)
    np.testing.assert_allclose(window(hu, 400, 1800), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert window(hu, 400, 1800).dtype == np.float32


@pytest.mark.parametrize("axcodes", ["LPS", "PIR"])
@pytest.mark.parametrize("view", list(VIEW_AXES))
def test_marked_voxel_comes_back_at_same_native_voxel(axcodes, view):
    """Native (non-RAS, anisotropic) -> canonical -> slices -> volume -> native: same voxel."""
    affine = np.diag([0.7, 0.9, 2.0, 1.0])
    ct = reorient(make_image(np.zeros((30, 26, 18), np.int16), affine), axcodes)
    marked = (11, 7, 9)
    native = np.zeros(ct.shape, np.float32)
    native[marked] = 1.0
    canonical_affine, canonical_shape = canonical_grid(ct.affine, ct.shape, (1.0, 1.0, 1.0))
    on_canonical = resample(native, ct.affine, canonical_affine, canonical_shape)
    stack = extract_slices(
        "case", on_canonical, None, view, min_size=32, spine=centre_spine(on_canonical.shape)
    )
    volume = assemble_volume(stack.images.astype(np.float32), stack)
    back = to_native(volume, canonical_affine, ct.affine, ct.shape)
    assert back.shape == ct.shape
    np.testing.assert_allclose(back.affine, ct.affine)
    assert np.unravel_index(np.argmax(back.get_fdata()), ct.shape) == marked


def test_real_lumbar_ct_canonical_and_back_keeps_grid():
    ct = nib.load(REAL_CT)
    canonical_ct, _ = to_canonical(ct, None, (3.0, 3.0, 3.0))
    assert canonical_ct.shape == ct.shape  # already RAS at 3 mm: the grid is unchanged
    probability = np.zeros(canonical_ct.shape, np.float32)
    probability[60, 50, 56] = 1.0
    back = to_native(probability, canonical_ct.affine, ct.affine, ct.shape)
    assert back.shape == ct.shape and np.allclose(back.affine, ct.affine)
    assert back.get_fdata()[60, 50, 56] == pytest.approx(1.0)


def test_every_native_voxel_lies_inside_the_canonical_grid(spine_like_ct):
    # spacings that do not divide the field of view: the grid must reach past its far edge
    ct, _ = spine_like_ct
    for spacing in [(1.25, 1.25, 1.25), (1.5, 0.7, 3.0)]:
        affine, shape = canonical_grid(ct.affine, ct.shape, spacing)
        back = to_native(np.ones(shape, np.float32), affine, ct.affine, ct.shape)
        assert np.asanyarray(back.dataobj).min() == pytest.approx(1.0)


def test_a_thin_break_survives_coarser_resampling():
    # a 1-voxel line at 0.5 mm resampled to 1.5 mm covers no new voxel by half
    shape = (30, 30, 30)
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    hu = np.zeros(shape, np.int16)
    mask = np.zeros(shape, np.uint8)
    mask[10:20, 14, 14] = 1  # a thin break
    mask[2:8, 2:8, 2:8] = 1  # a bulky lesion keeps its ">= 0.5" outline
    _, canonical = to_canonical(make_image(hu, affine), make_image(mask, affine), (1.5, 1.5, 1.5))
    labels, n = ndimage.label(np.asanyarray(canonical.dataobj), structure=np.ones((3, 3, 3)))
    assert n == 2
    bulky_mm3 = (labels == labels[1, 1, 1]).sum() * 1.5**3
    assert bulky_mm3 == pytest.approx(6**3 * 0.5**3, rel=0.5)
