"""Tests for vertebral_fracture.fusion."""

from __future__ import annotations

import numpy as np
import pytest

from vertebral_fracture.fusion import FUSION_METHODS, binarize, fuse, smooth_log_scores

# Hand numbers, shaped as a (1, 2, 2) volume per view.
A = np.array([0.2, 0.5, 1.0, 0.0], dtype=np.float32).reshape(1, 2, 2)
B = np.array([0.4, 0.5, 0.5, 0.9], dtype=np.float32).reshape(1, 2, 2)
C = np.array([0.8, 0.5, 0.25, 0.3], dtype=np.float32).reshape(1, 2, 2)

EXPECTED = {
    "product": [0.064, 0.125, 0.125, 0.0],
    "mean": [1.4 / 3, 0.5, 1.75 / 3, 0.4],
    "geometric_mean": [0.4, 0.5, 0.5, 0.0],
    "minimum": [0.2, 0.5, 0.25, 0.0],
    "maximum": [0.8, 0.5, 1.0, 0.9],
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_hand_values_dtype_and_inputs_untouched(method: str) -> None:
    views = [A.copy(), B.copy(), C.copy()]
    fused = fuse(views, method)
    assert fused.dtype == np.float32
    assert fused.shape == A.shape
    np.testing.assert_allclose(fused.ravel(), EXPECTED[method], rtol=1e-6, atol=1e-7)
    # Fusion accumulates in place into its own output, never into a caller's volume.
    for view, original in zip(views, (A, B, C), strict=True):
        np.testing.assert_array_equal(view, original)
    assert not any(np.shares_memory(fused, v) for v in views)


def test_registry_holds_exactly_the_documented_methods() -> None:
    assert set(FUSION_METHODS) == set(EXPECTED)


@pytest.mark.parametrize("zero_view", [0, 1, 2])
def test_product_zero_in_any_view_vetoes(zero_view: int) -> None:
    rng = np.random.default_rng(zero_view)
    views = [rng.uniform(0.5, 1.0, (4, 5, 6)).astype(np.float32) for _ in range(3)]
    views[zero_view][1, 2, 3] = 0.0
    fused = fuse(views, "product")
    assert fused[1, 2, 3] == 0.0
    assert np.all(np.delete(fused.ravel(), np.ravel_multi_index((1, 2, 3), fused.shape)) > 0.1)


def test_any_number_of_views() -> None:
    one = fuse([B], "product")
    np.testing.assert_array_equal(one, B)
    assert not np.shares_memory(one, B)
    four = [A, B, C, B]
    np.testing.assert_allclose(fuse(four, "product"), A * B * C * B, rtol=1e-6)
    np.testing.assert_allclose(fuse(four, "mean"), (A + B + C + B) / 4, rtol=1e-6)
    np.testing.assert_allclose(
        fuse(four, "geometric_mean"), (A * B * C * B) ** 0.25, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(fuse([A, C], "geometric_mean"), np.sqrt(A * C), rtol=1e-6)


def test_float64_inputs_give_float32_output() -> None:
    views = [v.astype(np.float64) for v in (A, B, C)]
    for method in FUSION_METHODS:
        assert fuse(views, method).dtype == np.float32


def test_unknown_method_lists_choices() -> None:
    with pytest.raises(ValueError, match="unknown fusion method 'median'") as info:
        fuse([A, B, C], "median")
    for name in FUSION_METHODS:
        assert name in str(info.value)


def test_shape_mismatch_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 2, 2\).*\(2, 2, 1\)"):
        fuse([A, B.reshape(2, 2, 1)], "product")


def test_no_views_is_an_error() -> None:
    for method in FUSION_METHODS:
        with pytest.raises(ValueError, match="at least one"):
            fuse([], method)


def test_binarize_is_uint8_and_inclusive() -> None:
    label = binarize(np.array([[[0.1, 0.3, 0.5]]], dtype=np.float32), np.float32(0.3))
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, [[[0, 1, 1]]])


def _ball(shape: tuple[int, int, int], center: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    dist2 = sum((g - c) ** 2 for g, c in zip(grid, center, strict=True))
    return dist2 <= radius**2


SHAPE = (40, 40, 40)
CENTER = (12, 20, 27)
FRACTURE = _ball(SHAPE, CENTER, 4)
FAR = ~_ball(SHAPE, CENTER, 10)  # voxels more than 10 voxels from the fracture centre


def test_slice_painted_maps_make_cross_artifact_with_mean_but_not_product() -> None:
    # Baseline: each view's slice classifier paints every slice through the fracture.
    views = []
    for axis in range(3):
        through = np.any(FRACTURE, axis=tuple(a for a in range(3) if a != axis))
        view = np.full(SHAPE, 0.02, dtype=np.float32)
        view[(slice(None),) * axis + (through,)] = 0.9
        views.append(view)
    mean = fuse(views, "mean")
    product = fuse(views, "product")
    # Any voxel on one painted slab gets (0.9 + 2 * 0.02) / 3 > 0.3: slabs/cross far away.
    assert np.count_nonzero((mean > 0.3) & FAR) > 1000
    # The product keeps only the intersection of the three slabs: the fracture's bounding box.
    assert not np.any((product > 0.3) & FAR)
    box = np.zeros(SHAPE, dtype=bool)
    box[tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in np.nonzero(FRACTURE))] = True
    np.testing.assert_array_equal(product > 0.3, box)


def test_product_of_localized_maps_removes_single_view_artifacts() -> None:
    # Localized (segmentation) maps: each view sees the fracture plus its own artifact blob.
    artifacts = [(30, 8, 8), (5, 33, 10), (32, 32, 5)]
    views = []
    for artifact in artifacts:
        view = np.full(SHAPE, 0.02, dtype=np.float32)
        view[FRACTURE | _ball(SHAPE, artifact, 3)] = 0.9
        views.append(view)
    np.testing.assert_array_equal(fuse(views, "product") > 0.3, FRACTURE)
    assert np.count_nonzero((fuse(views, "mean") > 0.3) & ~FRACTURE) > 100


def test_log_smoothing_drops_a_one_slice_spike_and_keeps_an_agreed_region() -> None:
    # A view lifted one voxel on one slice; all views agree on the fracture ball.
    scores = np.full(SHAPE, 1e-6, dtype=np.float32)
    scores[FRACTURE] = 0.5
    spike = (30, 8, 8)
    scores[spike] = 0.5
    smoothed = smooth_log_scores(scores, (1.0, 1.0, 1.0))
    assert smoothed.dtype == np.float32 and smoothed.shape == SHAPE
    assert smoothed[CENTER] > 0.4  # the region's core keeps its score
    assert smoothed[spike] < 1e-4  # the lone voxel falls to its surroundings' order
    # a uniform volume stays as it is; zeros (no window reached) give the floor, not NaN
    np.testing.assert_allclose(smooth_log_scores(np.full(SHAPE, 0.3), (2, 2, 2)), 0.3, rtol=1e-5)
    assert np.isfinite(smooth_log_scores(np.zeros(SHAPE), (1, 1, 1))).all()


def test_log_smoothing_acts_along_the_given_axes_only() -> None:
    scores = np.full(SHAPE, 1e-6, dtype=np.float32)
    scores[20, 20, :] = 0.5  # a line along z
    smoothed = smooth_log_scores(scores, (0.0, 0.0, 3.0))
    np.testing.assert_allclose(smoothed[20, 20, 5:-5], 0.5, rtol=1e-4)
    np.testing.assert_allclose(smoothed[21, 20], 1e-6, rtol=1e-4)


@pytest.mark.parametrize("sigma", [(1.0, 1.0), (1.0, -1.0, 1.0)])
def test_log_smoothing_needs_a_sigma_per_axis(sigma) -> None:
    with pytest.raises(ValueError, match="one non-negative value per axis"):
        smooth_log_scores(np.zeros(SHAPE), sigma)
