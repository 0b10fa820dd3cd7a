"""Slicing per view: labels, padding and exact reassembly."""

from __future__ import annotations

import numpy as np
import pytest

from vertebral_fracture.slicing import (
    VIEW_AXES,
    assemble_volume,
    crop_to_bone,
    extract_slices,
    padded_size,
)


@pytest.mark.parametrize("view", list(VIEW_AXES))
def test_label_class_equals_any_label_seg_and_volume_reassembles(view):
    rng = np.random.default_rng(1)
    image = rng.random((37, 45, 29)).astype(np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mask[10:14, 20:22, 5:9] = 1
    stack = extract_slices("c", image, mask, view, min_size=64)
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
        extract_slices("c", np.zeros((4, 4, 4), np.float32), None, "oblique", 32)


def test_crop_to_bone_keeps_bone_in_patch_and_geometry():
    image = np.zeros((20, 150, 130), np.float32)
    image[:, 100:110, 20:30] = 0.9  # "bone" far off-centre
    stack = extract_slices("c", image, (image > 0).astype(np.uint8), "sagittal", min_size=32)
    cropped = crop_to_bone(stack, 64)
    assert cropped.images.shape == (20, 64, 64)
    assert cropped.masks.sum() == stack.masks.sum()  # the whole bright block is inside the patch
    # geometry still maps the patch back onto the volume
    np.testing.assert_array_equal(
        assemble_volume(cropped.masks.astype(np.float32), cropped), image > 0
    )


def test_crop_to_bone_pads_small_slices():
    stack = extract_slices(
        "c", np.full((5, 30, 30), 0.9, np.float32), None, "sagittal", min_size=32
    )
    cropped = crop_to_bone(stack, 96)
    assert cropped.images.shape == (5, 96, 96)
    np.testing.assert_allclose(
        assemble_volume(cropped.images.astype(np.float32), cropped), 0.9, atol=1e-3
    )
