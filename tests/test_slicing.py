"""Slicing per view: labels, padding and exact reassembly."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import centre_spine
from vertebral_fracture.slicing import (
    VIEW_AXES,
    SliceStack,
    assemble_volume,
    extract_slices,
    padded_size,
    spine_windows,
    window_patch,
)


@pytest.mark.parametrize("view", list(VIEW_AXES))
def test_label_class_equals_any_label_seg_and_volume_reassembles(view):
    rng = np.random.default_rng(1)
    image = rng.random((37, 45, 29)).astype(np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mask[10:14, 20:22, 5:9] = 1
    stack = extract_slices("c", image, mask, view, min_size=64, spine=centre_spine(image.shape))
    assert stack.images.shape[1] % 32 == 0 and stack.images.shape[2] % 32 == 0
    assert min(stack.images.shape[1:]) >= 64
    np.testing.assert_array_equal(
        stack.labels, stack.masks.reshape(len(stack.masks), -1).any(axis=1)
    )
    assert (
        stack.labels.sum()
        == mask.any(axis=tuple(a for a in range(3) if a != VIEW_AXES[view])).sum()
    )
    np.testing.assert_allclose(
        assemble_volume(stack.images.astype(np.float32), stack), image, atol=1e-3
    )
    np.testing.assert_array_equal(assemble_volume(stack.masks.astype(np.float32), stack), mask)


def test_padding_never_crops():
    assert padded_size(10, 64) == 64
    assert padded_size(65, 64) == 96
    assert padded_size(244, 96) == 256


def test_unknown_view_is_rejected():
    with pytest.raises(ValueError, match="Unknown view 'oblique'"):
        extract_slices(
            "c", np.zeros((4, 4, 4), np.float32), None, "oblique", 32, spine=centre_spine((4, 4, 4))
        )


def _tube_stack(view: str, spine: np.ndarray, shape=(60, 50, 70), radius=6.0) -> SliceStack:
    """A volume whose mask is a tube of ``radius`` voxels around ``spine`` (Z, 2)."""
    x, y = np.ogrid[: shape[0], : shape[1]]
    tube = np.stack(
        [(x - cx) ** 2 + (y - cy) ** 2 <= radius**2 for cx, cy in spine], axis=2
    ).astype(np.uint8)
    return extract_slices("c", tube.astype(np.float32), tube, view, min_size=32, spine=spine)


def _winding_spine(n_slices: int = 70) -> np.ndarray:
    z = np.arange(n_slices)
    return np.stack([30 + 12 * np.sin(z / 15), 25 + 8 * np.cos(z / 20)], axis=1).astype(np.float32)


@pytest.mark.parametrize("view", list(VIEW_AXES))
def test_spine_windows_cover_every_voxel_of_the_tube(view):
    stack = _tube_stack(view, _winding_spine())
    size = 32
    covered = np.zeros(stack.masks.shape, np.float32)
    for i, top, left in spine_windows(stack, size):
        rows = slice(max(top, 0), max(top + size, 0))
        cols = slice(max(left, 0), max(left + size, 0))
        covered[i, rows, cols] = 1
    seen = assemble_volume(covered * stack.masks, stack)
    np.testing.assert_array_equal(seen, assemble_volume(stack.masks.astype(np.float32), stack))


@pytest.mark.parametrize("view", list(VIEW_AXES))
def test_spine_windows_stay_inside_the_volume_along_the_slicing_axis(view):
    stack = _tube_stack(view, _winding_spine())
    windows = spine_windows(stack, 32)
    assert len(windows) > 0
    n = stack.volume_shape[VIEW_AXES[view]]
    assert windows[:, 0].min() >= 0 and windows[:, 0].max() < n
    if view != "axial":  # tiles run along z, the columns of coronal and sagittal slices
        z = windows[:, 2] - stack.offset[1]
        assert z.min() == 0 and (z + 32).max() == stack.volume_shape[2]


def test_axial_windows_follow_a_moving_centre():
    spine = _winding_spine()
    stack = _tube_stack("axial", spine)
    windows = spine_windows(stack, 32)
    assert len(windows) == len(spine)  # one window per axial slice
    centre = windows[:, 1:] + 16 - np.asarray(stack.offset)
    np.testing.assert_allclose(centre, spine[windows[:, 0]], atol=0.51)


def test_window_patch_pads_outside_the_slice():
    planes = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5) + 1
    patch = window_patch(planes, np.array([1, 1]), -2, 3, 4)
    assert patch.shape == (2, 4, 4)
    np.testing.assert_array_equal(patch[0, 2:, :2], planes[1, :2, 3:])
    assert (patch[0, :2] == 0).all() and (patch[0, :, 2:] == 0).all()
