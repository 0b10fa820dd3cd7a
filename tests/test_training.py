"""Training engine: params, augmentation, dataset, sampler, loop, checkpoints, resume."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from pydantic import ValidationError
from torch.utils.data import DataLoader

from tests.conftest import centre_spine
from vertebral_fracture.datasets import SliceStackDataset
from vertebral_fracture.datasets.checkpoint_dataset import TorchCheckpointDataset
from vertebral_fracture.models import build_model
from vertebral_fracture.slicing import SliceStack, spine_windows
from vertebral_fracture.training import (
    HISTORY_COLUMNS,
    AugmentationParams,
    BalancedSliceSampler,
    IncompatibleCheckpointError,
    SliceAugmenter,
    SliceDataset,
    TrainingParams,
    build_augmenter,
    build_loss,
    evaluate,
    load_model_from_checkpoint,
    make_checkpoint,
    train,
    train_step,
    training_curves_figure,
)
from vertebral_fracture.training import loop as loop_module
from vertebral_fracture.training.loop import (
    RESUME_ONLY_KEYS,
    cpu_computes_bfloat16,
    resolve_autocast_dtype,
)


def make_stack(case_id: str, n: int = 10, size: int = 32, seed: int = 0) -> SliceStack:
    """Dim noisy sagittal slices of an (n, size, size) volume with a straight centred spine;
    every third slice holds a bright square 'fracture' and its mask."""
    rng = np.random.default_rng(seed)
    images = (rng.random((n, size, size)) * 0.2).astype(np.float16)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    side = max(4, size // 6)
    for i in range(0, n, 3):
        y, x = rng.integers(side, size - 2 * side, size=2)
        images[i, y : y + side, x : x + side] = 0.9
        masks[i, y : y + side, x : x + side] = 1
    shape = (n, size, size)
    return SliceStack(
        case_id,
        "sagittal",
        images,
        masks,
        np.arange(n, dtype=np.int32),
        volume_shape=shape,
        spine=centre_spine(shape),
    )


def tiny_params(**overrides) -> TrainingParams:
    base = dict(
        architecture="multitask",
        encoder="resnet18",
        in_channels=3,
        slice_size=32,
        batch_size=4,
        max_epochs=2,
        steps_per_epoch=2,
        learning_rate=1e-3,
        positive_fraction=0.5,
        early_stopping_patience=None,
        lr_scheduler={"patience": 0, "factor": 0.5},
        seed=123,
        num_threads=2,
        device="cpu",
    )
    base.update(overrides)
    return TrainingParams(**base)


# --------------------------------------------------------------------------- params


def test_params_validation() -> None:
    with pytest.raises(ValidationError, match="slice_size"):
        TrainingParams(slice_size=100)
    with pytest.raises(ValidationError, match="seg_weight"):
        TrainingParams(seg_weight=-0.1)
    with pytest.raises(ValidationError, match="in_channels"):
        TrainingParams(in_channels=2)
    with pytest.raises(ValidationError, match="unknown_key"):
        TrainingParams(unknown_key=1)
    with pytest.raises(ValidationError, match="positive_fraction"):
        TrainingParams(positive_fraction=1.0)
    with pytest.raises(ValidationError, match="rotation_deg"):
        TrainingParams(augmentation={"rotation_deg": -5})
    with pytest.raises(ValidationError, match="ema_decay"):
        TrainingParams(ema_decay=1.0)  # an average that never moves
    params = TrainingParams(slice_size=64, in_channels=3)
    assert 1 <= params.resolved_num_threads() <= 4
    assert TrainingParams.model_validate(params.model_dump(mode="json")) == params


# --------------------------------------------------------------------------- augmentation


def _square_image(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((size, size, 3), dtype=np.float32)
    mask = np.zeros((size, size), dtype=np.uint8)
    image[20:36, 24:44, :] = 1.0
    mask[20:36, 24:44] = 1
    return image, mask


def test_augmentation_moves_mask_with_image() -> None:
    aug = SliceAugmenter(
        AugmentationParams(
            rotation_deg=30, shift=0.1, scale=0.15, affine_p=1.0, flip=True,
            noise_std=0.0, brightness_contrast=0.0,
        ),
        view="axial",
    )  # fmt: skip
    image, mask = _square_image()
    changed = 0
    for seed in range(12):
        out_image, out_mask = aug(image, mask, seed=seed)
        assert out_image.shape == image.shape and out_image.dtype == np.float32
        assert out_mask.shape == mask.shape and set(np.unique(out_mask)) <= {0, 1}
        bright = out_image[..., 1] > 0.5
        iou = (bright & (out_mask > 0)).sum() / (bright | (out_mask > 0)).sum()
        assert iou > 0.85, f"seed {seed}: image and mask moved apart (IoU {iou:.2f})"
        # all channels move together
        assert np.array_equal(out_image[..., 0], out_image[..., 2])
        changed += not np.array_equal(out_mask, mask)
    assert changed >= 10

    # same seed -> same result; intensity steps keep the image in [0, 1], mask binary
    noisy = SliceAugmenter(
        AugmentationParams(noise_std=0.2, brightness_contrast=0.3), view="coronal"
    )
    a = noisy(image, mask, seed=5)
    b = noisy(image, mask, seed=5)
    c = noisy(image, mask, seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].min() >= 0.0 and a[0].max() <= 1.0 and set(np.unique(a[1])) <= {0, 1}


def test_validation_has_no_augmentation() -> None:
    params = AugmentationParams(rotation_deg=45, noise_std=0.3)
    assert build_augmenter(params, train=False, view="axial") is None
    assert build_augmenter(AugmentationParams(enabled=False), train=True, view="axial") is None
    assert isinstance(build_augmenter(params, train=True, view="axial"), SliceAugmenter)


def test_scanner_steps_change_the_image_not_the_mask() -> None:
    scanner_only = AugmentationParams(
        rotation_deg=0, shift=0, scale=0, flip=False, noise_std=0, brightness_contrast=0
    )
    aug = SliceAugmenter(scanner_only, view="coronal")
    image, mask = _square_image()
    changed = 0
    for seed in range(20):
        out, out_mask = aug(image, mask, seed=seed)
        np.testing.assert_array_equal(out_mask, mask)  # image-only steps
        changed += not np.allclose(out, image)
    assert changed >= 5  # thickness, pixel size, blur, sharpening and gamma do happen


def test_a_wide_context_gets_each_slice_s_scanner_look() -> None:
    # OpenCV resizes at most 4 channels at once: 7 context slices must still pass, each
    # slice thickened and coarsened exactly as it would be alone
    aug = SliceAugmenter(
        AugmentationParams(
            rotation_deg=0, shift=0, scale=0, flip=False, noise_std=0, brightness_contrast=0
        ),
        view="sagittal",
    )
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 7), dtype=np.float32)
    mask = np.zeros((64, 64), dtype=np.uint8)
    changed = 0
    for seed in range(20):
        out, _ = aug(image, mask, seed=seed)
        assert out.shape == image.shape
        for c in range(image.shape[-1]):
            alone, _ = aug(image[..., c : c + 1], mask, seed=seed)
            np.testing.assert_allclose(out[..., c], alone[..., 0], atol=1e-6)
        changed += not np.allclose(out, image)
    assert changed >= 5


@pytest.mark.parametrize(("view", "z_axis"), [("coronal", 1), ("sagittal", 1), ("axial", None)])
def test_thicker_slices_blur_along_z_only(view: str, z_axis: int | None) -> None:
    from vertebral_fracture.training.augmentation import AxisResample, slice_axis_in_plane

    assert slice_axis_in_plane(view) == z_axis  # coronal (x, z) and sagittal (y, z): columns
    stripes = np.zeros((32, 32, 1), np.float32)
    stripes[:, ::2] = 1.0  # alternate along columns
    thick = AxisResample(axis=1, max_factor=4.0, p=1.0)
    out = thick.apply(stripes, factor=4.0)
    assert np.ptp(out[0, :, 0]) < 0.5  # smoothed along the resampled axis
    np.testing.assert_allclose(out[:, 5, 0], out[0, 5, 0])  # untouched across it
    rows = AxisResample(axis=0, max_factor=4.0, p=1.0).apply(stripes, factor=4.0)
    np.testing.assert_allclose(rows, stripes)  # stripes constant along rows: nothing to blur


@pytest.mark.parametrize(("factor", "phase"), [(2.8, 0.0), (2.8, 1.4), (4.0, 0.3), (1.7, 1.0)])
def test_thick_slices_dilute_a_thin_layer_and_keep_flat_bone(factor: float, phase: float) -> None:
    from vertebral_fracture.training.augmentation import thick_slice_weights

    n = 40
    weights = thick_slice_weights(np.arange(n), n, factor, phase)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)  # flat bone stays flat
    layer = np.zeros(n)
    layer[20] = 1.0  # a 1-voxel compaction band or break
    seen = weights @ layer
    assert seen.max() <= 1.0 / factor + 1e-6  # partial volume: diluted by the thickness
    assert np.count_nonzero(seen > 1e-6) >= 2  # and smeared over the interpolated neighbours
    np.testing.assert_allclose(thick_slice_weights(np.arange(n), n, 1.0, 0.0), np.eye(n))


def test_axial_items_are_composed_from_thicker_slices() -> None:
    # Axial slices are cut across z: a thicker scanner slice mixes neighbouring slices, which
    # the dataset composes; the mask stays the fine ground truth
    n, size = 21, 32
    images = np.zeros((n, size, size), np.float16)
    images[10, 8:24, 8:24] = 1.0
    masks = np.zeros((n, size, size), np.uint8)
    masks[10, 8:24, 8:24] = 1
    stack = SliceStack("a", "axial", images, masks, np.arange(n, dtype=np.int32), (size, size, n))
    only_thickness = AugmentationParams(
        rotation_deg=0, shift=0, scale=0, flip=False, noise_std=0, brightness_contrast=0,
        slice_thickness=4, in_plane_downscale=1, blur_sigma=0, sharpen=0, gamma=0,
    )  # fmt: skip
    augmenter = SliceAugmenter(only_thickness, view="axial")
    ds = SliceDataset([stack], in_channels=3, augmenter=augmenter)
    thickened = 0
    for seed in range(40):
        image, label, mask = ds[(10, seed)]
        assert torch.equal(mask[0], torch.from_numpy(masks[10].astype(np.float32)))
        assert label.item() == 1.0
        assert torch.equal(image, ds[(10, seed)][0])  # reproducible per seed
        if augmenter.thickening_across_slices(seed) is None:
            assert torch.equal(image[1], torch.from_numpy(images[10].astype(np.float32)))
        else:
            thickened += 1
            assert image[1].max() < 1.0  # the layer is diluted...
            assert max(image[0].max(), image[2].max()) > 0.0  # ...and reaches a neighbour
    assert 4 <= thickened <= 24  # p = 0.3 of 40 draws
    sagittal = SliceAugmenter(only_thickness, view="sagittal")  # thickens in-plane instead
    assert all(sagittal.thickening_across_slices(seed) is None for seed in range(40))


@pytest.mark.parametrize(
    ("view", "mirror_axis"), [("axial", 0), ("coronal", 0), ("sagittal", None)]
)
def test_flips_mirror_left_right_only(view: str, mirror_axis: int | None) -> None:
    # rows of axial and coronal slices run left-right (RAS x); sagittal slices have no such axis
    only_flip = AugmentationParams(
        rotation_deg=0, shift=0, scale=0, flip=True, noise_std=0, brightness_contrast=0,
        slice_thickness=1, in_plane_downscale=1, blur_sigma=0, sharpen=0, gamma=0,
    )  # fmt: skip
    aug = SliceAugmenter(only_flip, view=view)
    image, mask = _square_image()
    outcomes = set()
    for seed in range(16):
        out, out_mask = aug(image, mask, seed=seed)
        if np.array_equal(out, image):
            outcomes.add("same")
        else:
            assert mirror_axis is not None
            np.testing.assert_array_equal(out, np.flip(image, axis=mirror_axis))
            np.testing.assert_array_equal(out_mask, np.flip(mask, axis=mirror_axis))
            outcomes.add("mirrored")
    assert outcomes == ({"same"} if mirror_axis is None else {"same", "mirrored"})
    stack = make_stack("v", n=4, size=32)
    ds = SliceDataset([stack], in_channels=1, augmenter=None)
    for key in (0, (0, 1), (0, 2)):  # seeds are ignored without an augmenter
        image, label, mask = ds[key]
        assert torch.equal(image[0], torch.from_numpy(stack.images[0].astype(np.float32)))
        assert torch.equal(mask[0], torch.from_numpy(stack.masks[0].astype(np.float32)))
        assert label.item() == 1.0


# --------------------------------------------------------------------------- dataset


def test_dataset_channels_are_clamped_neighbours() -> None:
    n, size = 6, 32
    images = np.stack([np.full((size, size), i / 10, dtype=np.float16) for i in range(n)])
    masks = np.zeros((n, size, size), dtype=np.uint8)
    masks[2, 5:9, 5:9] = 1
    stack_a = SliceStack("a", "sagittal", images, masks, np.arange(n, dtype=np.int32))
    stack_b = SliceStack("b", "sagittal", images[:2], masks[:2], np.arange(2, dtype=np.int32))
    ds = SliceDataset([stack_a, stack_b], in_channels=5, expected_size=size)
    assert len(ds) == n + 2
    assert ds.labels.tolist() == [0, 0, 1, 0, 0, 0, 0, 0]

    def channel_ids(index: int) -> list[int]:
        image, _, _ = ds[index]
        assert image.shape == (5, size, size) and image.dtype == torch.float32
        return [round(float(c.mean()) * 10) for c in image]

    assert channel_ids(0) == [0, 0, 0, 1, 2]
    assert channel_ids(2) == [0, 1, 2, 3, 4]
    assert channel_ids(5) == [3, 4, 5, 5, 5]
    assert channel_ids(6) == [0, 0, 0, 1, 1]  # second stack: neighbours never cross stacks
    wide = SliceDataset([stack_a], in_channels=3, context_stride=2, expected_size=size)
    assert [round(float(c.mean()) * 10) for c in wide[2][0]] == [0, 2, 4]
    assert [round(float(c.mean()) * 10) for c in wide[5][0]] == [3, 5, 5]
    image, label, mask = ds[2]
    assert label.item() == 1.0 and mask.shape == (1, size, size) and mask.sum() == 16

    with pytest.raises(ValueError, match="slice_size"):
        SliceDataset([stack_a], in_channels=1, expected_size=64)
    unlabelled = SliceStack("u", "sagittal", images, None, np.arange(n, dtype=np.int32))
    with pytest.raises(ValueError, match="no masks"):
        SliceDataset([unlabelled])


# --------------------------------------------------------------------------- sampler


def test_sampler_positive_fraction_and_reproducibility() -> None:
    labels = np.zeros(1000, dtype=np.uint8)
    labels[np.random.default_rng(0).choice(1000, 40, replace=False)] = 1
    sampler = BalancedSliceSampler(labels, num_samples=400, positive_fraction=0.25, seed=9)
    sampler.set_epoch(3)
    draws = list(sampler)
    assert len(draws) == len(sampler) == 400
    indices = np.array([i for i, _ in draws])
    assert abs(labels[indices].mean() - 0.25) <= 0.01
    # positives are cycled through before any repeats
    assert len(set(indices[labels[indices] == 1].tolist())) == 40
    # same (seed, epoch) -> same order and augmentation seeds, whatever ran before
    sampler.set_epoch(4)
    other_epoch = list(sampler)
    again = BalancedSliceSampler(labels, num_samples=400, positive_fraction=0.25, seed=9)
    again.set_epoch(3)
    assert list(again) == draws
    assert other_epoch != draws
    other_seed = BalancedSliceSampler(labels, num_samples=400, positive_fraction=0.25, seed=10)
    other_seed.set_epoch(3)
    assert list(other_seed) != draws

    with pytest.warns(RuntimeWarning, match="No fracture"):
        negatives_only = BalancedSliceSampler(np.zeros(50), num_samples=20, positive_fraction=0.5)
    assert len(list(negatives_only)) == 20 and negatives_only.num_positives == 0


def test_sampler_draws_hard_negatives_first_and_the_rest_as_before() -> None:
    labels = np.zeros(60, dtype=np.uint8)
    labels[:12] = 1
    sampler = BalancedSliceSampler(labels, num_samples=40, positive_fraction=0.5, seed=2)
    hard = np.array([20, 33, 47])
    sampler.set_hard_negatives(hard)
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        drawn = np.array([i for i, _ in sampler])
        negatives = drawn[labels[drawn] == 0]
        assert len(negatives) == 20 and labels[drawn].sum() == 20
        # every hard negative drawn; the other 17 draws are permutations of all negatives
        assert all(np.sum(negatives == i) >= 1 for i in hard)
        assert len(set(negatives.tolist())) >= 17
    with pytest.raises(ValueError, match="negative slices"):
        sampler.set_hard_negatives(np.array([3]))  # a positive
    with pytest.raises(ValueError, match="at most 20"):
        sampler.set_hard_negatives(np.arange(12, 60))


def test_sampler_pairs_each_drawn_fracture_window_with_its_intact_twin() -> None:
    labels = np.zeros(60, dtype=np.uint8)
    labels[:12] = 1
    twin_items = np.full(60, -1)
    twin_items[:12] = np.arange(30, 42)  # positive i's twin is negative 30 + i
    # 10 positives an epoch (of 12) and 30 negatives, up to 15 of them twins
    sampler = BalancedSliceSampler(
        labels, 40, positive_fraction=0.25, seed=5, twin_items=twin_items, twin_fraction=0.5
    )
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        drawn, seeds = sampler.indices()
        positives, negatives = drawn[labels[drawn] == 1], drawn[labels[drawn] == 0]
        assert len(positives) == 10 and len(negatives) == 30
        assert np.isin(twin_items[positives], negatives).all()
        # each twin is augmented as its fracture window: the pair differs only in the fracture
        assert all(
            np.isin(seeds[drawn == i], seeds[drawn == twin_items[i]]).all() for i in positives
        )
    with pytest.raises(ValueError, match="one negative item"):
        BalancedSliceSampler(labels, 40, 0.25, twin_items=np.arange(60), twin_fraction=0.5)


def test_intact_twins_are_cut_with_their_fractured_cases_windows(split, monkeypatch, caplog):
    fractured = split[0][0]
    twin = SliceStack(
        "t1_intact",
        fractured.view,
        fractured.images,
        np.zeros_like(fractured.masks),
        fractured.slice_numbers,
        volume_shape=fractured.volume_shape,
        spine=fractured.spine + 5.0,  # located a little elsewhere: its own windows would differ
    )
    pairs: list[tuple[SliceDataset, np.ndarray]] = []
    pair = SliceDataset.twin_items

    def spy(dataset, twin_stacks):
        pairs.append((dataset, pair(dataset, twin_stacks)))
        return pairs[-1][1]

    monkeypatch.setattr(SliceDataset, "twin_items", spy)
    stacks = [fractured, split[0][1], twin]
    params = tiny_params(twin_negative_fraction=0.5, max_epochs=1)
    train(stacks, split[1], params, twin_of={"t1_intact": "t1"}, progress=False)
    ((dataset, twin_items),) = pairs
    items = dataset._items
    ours = np.flatnonzero(items[:, 0] == 0)
    assert len(ours) and (items[twin_items[ours], 0] == 2).all()
    np.testing.assert_array_equal(items[twin_items[ours], 1:], items[ours, 1:])
    assert (twin_items[items[:, 0] != 0] == -1).all()
    with pytest.raises(ValueError, match="t1_intact.*not cut with the windows"):
        SliceDataset(
            stacks, 3, windows=[spine_windows(s, 32) for s in stacks], window_size=32
        ).twin_items({2: 0})

    caplog.set_level(logging.INFO, logger=loop_module.__name__)
    train(stacks, split[1], params, progress=False)  # twins not named: no pairs, said so
    assert "No training case has its intact twin" in caplog.text and len(pairs) == 1


def test_hardest_negatives_are_those_the_model_scores_highest() -> None:
    class Brightness(torch.nn.Module):
        """Scores a window by its pixels: the peak is the brightest pixel."""

        def fracture_probability(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1]

    n, size = 6, 32
    images = np.zeros((n, size, size), dtype=np.float16)
    for i, peak in enumerate([0.1, 0.9, 0.3, 0.8, 0.2, 0.5]):
        images[i, 5, 5] = peak
    stack = SliceStack("a", "axial", images, np.zeros_like(images, np.uint8), np.arange(n))
    dataset = SliceDataset([stack], in_channels=1)
    pool = np.array([5, 0, 3, 2])
    hardest = loop_module.hardest_negatives(
        Brightness(), dataset, pool, 2, device=torch.device("cpu"), batch_size=3
    )
    np.testing.assert_array_equal(hardest, [5, 3])  # 0.5 and 0.8, in the pool's order


def test_lesion_balanced_sampling_draws_each_lesion_alike() -> None:
    """A collapse on 8 slices and a break on 1 slice are drawn equally often."""
    n, size = 12, 32
    images = np.zeros((n, size, size), dtype=np.float16)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    masks[1:9, 4:12, 4:12] = 1  # large lesion: slices 1-8
    masks[10, 20:22, 20:30] = 1  # thin lesion: slice 10 only
    stack = SliceStack("a", "axial", images, masks, np.arange(n, dtype=np.int32))
    ds = SliceDataset([stack], in_channels=1)
    weights = ds.lesion_balanced_weights()
    np.testing.assert_allclose(weights[1:9], 1 / 8)
    assert weights[10] == 1.0 and weights[[0, 9, 11]].sum() == 0
    sampler = BalancedSliceSampler(
        ds.labels, num_samples=4000, positive_fraction=0.5, seed=1, positive_weights=weights
    )
    drawn = np.array([i for i, _ in sampler])
    thin, large = np.sum(drawn == 10), np.isin(drawn, range(1, 9)).sum()
    assert abs(thin / (thin + large) - 0.5) < 0.05  # slice-uniform would give 1/9
    assert abs(ds.labels[drawn].mean() - 0.5) <= 0.01
    with pytest.raises(ValueError, match="one non-negative weight per slice"):
        BalancedSliceSampler(ds.labels, 10, 0.5, positive_weights=weights[:3])


def test_window_items_cut_image_mask_and_label_from_the_window() -> None:
    n, size = 6, 64
    images = np.zeros((n, size, size), dtype=np.float16)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    images[2, 40:44, 40:44] = 0.9
    masks[2, 40:44, 40:44] = 1  # one lesion, bottom right
    stack = SliceStack("a", "axial", images, masks, np.arange(n, dtype=np.int32))
    windows = np.array([[2, 0, 0], [2, 32, 32], [3, 32, 32], [2, 48, 48]])  # last runs past
    ds = SliceDataset([stack], in_channels=3, windows=[windows], window_size=32)
    np.testing.assert_array_equal(ds.labels, [0, 1, 0, 0])
    image, label, mask = ds[1]
    assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32) and float(label) == 1.0
    assert mask[0, 8:12, 8:12].all() and mask.sum() == 16
    assert image[1, 8:12, 8:12].min() > 0.8 and image[0].max() == 0  # neighbours: same window
    np.testing.assert_allclose(ds.lesion_balanced_weights(), [0, 1, 0, 0])
    with pytest.raises(ValueError, match="slice_size"):
        SliceDataset([stack], windows=[windows], window_size=32, expected_size=64)


def test_lesion_weights_count_the_windows_showing_a_lesion() -> None:
    """A lesion seen by two overlapping windows gives each half the weight of a lesion seen
    by one."""
    n, size = 4, 64
    masks = np.zeros((n, size, size), dtype=np.uint8)
    masks[1, 30:34, 30:34] = 1  # inside both windows on slice 1
    masks[3, 2:4, 2:4] = 1  # inside the first window of slice 3 only
    stack = SliceStack("a", "axial", masks.astype(np.float16), masks, np.arange(n, dtype=np.int32))
    windows = np.array([[1, 0, 0], [1, 16, 16], [3, 0, 0], [3, 16, 16]])
    ds = SliceDataset([stack], windows=[windows], window_size=32)
    np.testing.assert_allclose(ds.lesion_balanced_weights(), [0.5, 0.5, 1.0, 0.0])


# --------------------------------------------------------------------------- loop pieces


def test_few_steps_on_a_fixed_batch_lower_the_loss() -> None:
    torch.manual_seed(0)
    stack = make_stack("o", n=4, size=64, seed=3)
    batch = next(iter(DataLoader(SliceDataset([stack], in_channels=1), batch_size=4)))
    params = tiny_params(in_channels=1, slice_size=64)
    model = build_model("multitask", encoder="resnet18", in_channels=1)
    loss_fn = build_loss(params)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    # 10 steps: the default loss is mostly the Focal Tversky term, slower to fall than BCE
    losses = [
        train_step(model, batch, loss_fn, optimizer, device=torch.device("cpu")) for _ in range(10)
    ]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.skipif(not cpu_computes_bfloat16(), reason="this CPU has no native bfloat16")
def test_bfloat16_steps_on_a_capable_cpu_run_in_bfloat16_and_learn() -> None:
    stack = make_stack("o", n=4, size=64, seed=3)
    batch = next(iter(DataLoader(SliceDataset([stack], in_channels=1), batch_size=4)))
    params = tiny_params(in_channels=1, slice_size=64, cpu_bfloat16=True)
    dtype = resolve_autocast_dtype(params, torch.device("cpu"))
    assert dtype == torch.bfloat16
    runs = {}
    for name, autocast_dtype in (("float32", None), ("bfloat16", dtype)):
        torch.manual_seed(0)
        model = build_model("multitask", encoder="resnet18", in_channels=1).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        runs[name] = [
            train_step(
                model,
                batch,
                build_loss(params),
                optimizer,
                device=torch.device("cpu"),
                autocast_dtype=autocast_dtype,
            )
            for _ in range(10)  # as in the float32 test above: the default loss falls slowly
        ]
    losses = runs["bfloat16"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    assert losses != runs["float32"]  # the rounding shows: bfloat16 was in use


def test_cpu_bfloat16_falls_back_to_float32_where_the_cpu_lacks_it(split, monkeypatch) -> None:
    monkeypatch.setattr(loop_module, "cpu_computes_bfloat16", lambda: False)
    params = tiny_params(max_epochs=1, cpu_bfloat16=True)
    assert resolve_autocast_dtype(params, torch.device("cpu")) is None
    fallback = train(*split, params, progress=False)
    plain = train(*split, tiny_params(max_epochs=1), progress=False)
    _assert_same_weights(fallback.model.state_dict(), plain.model.state_dict())


def test_evaluate_baseline_has_nan_dice_and_pr_auc_without_positives() -> None:
    stack = make_stack("e", n=4, size=32)
    no_positives = SliceStack(
        "n", "sagittal", stack.images, np.zeros_like(stack.masks), stack.slice_numbers
    )
    baseline = build_model("baseline", encoder="resnet18", in_channels=1)
    loss_fn = build_loss(tiny_params(architecture="baseline"))
    cpu = torch.device("cpu")
    loader = DataLoader(SliceDataset([stack], in_channels=1), batch_size=4)
    metrics = evaluate(baseline, loader, loss_fn, device=cpu)
    assert math.isfinite(metrics["loss"]) and math.isfinite(metrics["class_pr_auc"])
    assert math.isnan(metrics["dice"])
    loader = DataLoader(SliceDataset([no_positives], in_channels=1), batch_size=4)
    assert math.isnan(evaluate(baseline, loader, loss_fn, device=cpu)["class_pr_auc"])


def test_incompatible_checkpoint_names_the_parameter() -> None:
    params = tiny_params(in_channels=1)
    model = build_model("multitask", encoder="resnet18", in_channels=1)
    optimizer = torch.optim.Adam(model.parameters())
    checkpoint = make_checkpoint(
        epoch=1,
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer),
        scaler=None,
        params=params,
        history=[],
        best_epoch=1,
        best_score=1.0,
        epochs_without_improvement=0,
        stopped_early=False,
    )
    with pytest.raises(IncompatibleCheckpointError, match=r"architecture.*'multitask'.*'baseline'"):
        load_model_from_checkpoint(checkpoint, {"architecture": "baseline"})
    with pytest.raises(IncompatibleCheckpointError, match=r"in_channels is 1 .* but 3"):
        load_model_from_checkpoint(checkpoint, tiny_params(in_channels=3))
    with pytest.raises(IncompatibleCheckpointError, match="slice_size"):
        load_model_from_checkpoint(checkpoint, {"slice_size": 256, "encoder": "resnet18"})
    with pytest.raises(IncompatibleCheckpointError, match="not a training checkpoint"):
        load_model_from_checkpoint({"state_dict": {}})
    forged = dict(checkpoint, params={**checkpoint["params"], "architecture": "baseline"})
    with pytest.raises(IncompatibleCheckpointError, match="do not fit"):
        load_model_from_checkpoint(forged)
    with pytest.raises(IncompatibleCheckpointError, match="attention_gates is True .* but False"):
        load_model_from_checkpoint(checkpoint, tiny_params(in_channels=1, attention_gates=False))
    # same weights, other input: a model trained on adjacent slices is not one for wider context
    with pytest.raises(IncompatibleCheckpointError, match="context_stride is 1 .* but 3"):
        load_model_from_checkpoint(checkpoint, tiny_params(in_channels=1, context_stride=3))
    # a checkpoint written before a shape parameter existed holds that parameter's default
    older = dict(checkpoint, params={**checkpoint["params"]})
    del older["params"]["attention_gates"], older["params"]["deep_supervision"]
    assert load_model_from_checkpoint(older, tiny_params(in_channels=1)) is not None
    rebuilt = load_model_from_checkpoint(checkpoint, params)
    assert not rebuilt.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key])


# --------------------------------------------------------------------------- full loop + resume


@pytest.fixture(scope="module")
def split() -> tuple[list[SliceStack], list[SliceStack]]:
    train_stacks = [make_stack("t1", n=10, seed=1), make_stack("t2", n=8, seed=2)]
    val_stacks = [make_stack("v1", n=8, seed=3)]
    return train_stacks, val_stacks


@pytest.fixture(scope="module")
def uninterrupted(split, tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    last = TorchCheckpointDataset(filepath=str(folder / "last.pt"))
    best = TorchCheckpointDataset(filepath=str(folder / "best.pt"))
    seen: list[pd.DataFrame] = []
    result = train(
        *split,
        tiny_params(),
        last_checkpoint=last,
        best_checkpoint=best,
        on_epoch_end=seen.append,
        progress=False,
    )
    return result, last, best, seen


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def test_training_run_history_and_checkpoints(uninterrupted) -> None:
    result, last, best, seen = uninterrupted
    history = result.history
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2]
    assert [len(frame) for frame in seen] == [1, 2]
    assert np.isfinite(history[["train_loss", "val_loss", "lr", "seconds"]].to_numpy()).all()
    assert history["val_class_pr_auc"].between(0, 1).all()
    assert history["val_dice"].between(0, 1).all()

    checkpoint = last.load()  # weights_only=True
    assert checkpoint["epoch"] == 2
    assert checkpoint["params"] == tiny_params().model_dump(mode="json")
    assert checkpoint["metrics"]["history"]["val_loss"] == history["val_loss"].tolist()
    assert isinstance(checkpoint["rng_state"]["torch"], torch.Tensor)
    assert isinstance(checkpoint["rng_state"]["numpy"]["state"]["state"], int)
    assert {"model_state_dict", "optimizer_state_dict", "scheduler_state_dict"} <= set(checkpoint)

    best_checkpoint = best.load()
    assert best_checkpoint["epoch"] == result.best_epoch
    # served weights only: a third of the size, nothing inference or resume reads is lost
    assert not set(RESUME_ONLY_KEYS) & set(best_checkpoint)
    assert best_checkpoint["params"] == checkpoint["params"]
    _assert_same_weights(best_checkpoint["model_state_dict"], result.model.state_dict())
    rebuilt = load_model_from_checkpoint(checkpoint, tiny_params())
    _assert_same_weights(rebuilt.state_dict(), checkpoint["model_state_dict"])

    figure = training_curves_figure(history, best_epoch=result.best_epoch, title="tiny")
    assert isinstance(figure, Figure) and len(figure.axes) == 3
    for ax in figure.axes:  # the dotted line marks the epoch the monitor chose
        marks = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert [list(line.get_xdata()) for line in marks] == [[result.best_epoch] * 2]


def test_training_runs_numpy_blas_on_one_thread_and_gives_the_threads_back(split) -> None:
    """The augmentation calls numpy's BLAS between steps; its spinning threads would take the
    cores torch trains on."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    assert before, "numpy's BLAS is not found: the check would pass vacuously"
    during: list[list[int]] = []
    train(*split, tiny_params(max_epochs=1), on_epoch_end=lambda _: during.append(blas_threads()))
    assert during == [[1] * len(before)]
    assert blas_threads() == before


def test_resume_matches_uninterrupted_run(split, uninterrupted, tmp_path: Path) -> None:
    result, full_last, _, _ = uninterrupted
    last = TorchCheckpointDataset(filepath=str(tmp_path / "last.pt"))
    best = TorchCheckpointDataset(filepath=str(tmp_path / "best.pt"))
    first = train(
        *split, tiny_params(max_epochs=1), last_checkpoint=last, best_checkpoint=best,
        progress=False,
    )  # fmt: skip
    assert first.history["epoch"].tolist() == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no surprises on resume
        resumed = train(
            *split, tiny_params(resume=True), last_checkpoint=last, best_checkpoint=best,
            progress=False,
        )  # fmt: skip
    assert resumed.resumed_from_epoch == 1
    assert resumed.best_epoch == result.best_epoch

    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[columns], result.history[columns])
    _assert_same_weights(last.load()["model_state_dict"], full_last.load()["model_state_dict"])
    _assert_same_weights(
        last.load()["optimizer_state_dict"]["state"][0],
        full_last.load()["optimizer_state_dict"]["state"][0],
    )
    _assert_same_weights(resumed.model.state_dict(), result.model.state_dict())

    # resuming a finished run trains nothing more and returns the same model
    again = train(
        *split, tiny_params(resume=True), last_checkpoint=last, best_checkpoint=best,
        progress=False,
    )  # fmt: skip
    assert again.history["epoch"].tolist() == [1, 2]
    _assert_same_weights(again.model.state_dict(), result.model.state_dict())

    # resuming into another architecture is refused, naming the parameter
    with pytest.raises(IncompatibleCheckpointError, match="encoder"):
        train(
            *split, tiny_params(resume=True, encoder="efficientnet_b0"), last_checkpoint=last,
            progress=False,
        )  # fmt: skip


def test_weight_average_is_served_checkpointed_and_resumed(split, tmp_path: Path) -> None:
    """With ema_decay, inference gets the moving average of the trained weights, and a killed
    run resumes both the trained weights and their average."""
    params = tiny_params(ema_decay=0.5, steps_per_epoch=1)
    full = TorchCheckpointDataset(filepath=str(tmp_path / "full.pt"))
    best = TorchCheckpointDataset(filepath=str(tmp_path / "best.pt"))
    uninterrupted = train(
        *split, params, last_checkpoint=full, best_checkpoint=best, progress=False
    )
    last = TorchCheckpointDataset(filepath=str(tmp_path / "last.pt"))
    train(*split, params.model_copy(update={"max_epochs": 1}), last_checkpoint=last, progress=False)
    after_step_1 = last.load()
    resumed = train(*split, params.model_copy(update={"resume": True}), last_checkpoint=last,
                    progress=False)  # fmt: skip
    after_step_2 = last.load()

    # one step per epoch: the average starts at the first step's weights, then takes half of
    # the second's
    w1, w2 = after_step_1["trained_state_dict"], after_step_2["trained_state_dict"]
    _assert_same_weights(after_step_1["model_state_dict"], w1)
    average = after_step_2["model_state_dict"]
    floats = [key for key, value in w2.items() if value.is_floating_point()]
    assert any(not torch.equal(average[key], w2[key]) for key in floats)
    for key in floats:
        torch.testing.assert_close(average[key], 0.5 * (w1[key] + w2[key]))

    _assert_same_weights(after_step_2["model_state_dict"], full.load()["model_state_dict"])
    _assert_same_weights(after_step_2["trained_state_dict"], full.load()["trained_state_dict"])
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[columns], uninterrupted.history[columns])
    # what the pipeline serves and what inference rebuilds is the average of the best epoch
    _assert_same_weights(uninterrupted.model.state_dict(), best.load()["model_state_dict"])
    rebuilt = load_model_from_checkpoint(full.load())
    _assert_same_weights(rebuilt.state_dict(), average)


def test_hard_negatives_are_mined_from_epoch_2_and_resumed(split, tmp_path, monkeypatch):
    """The training loop draws the negatives its model scores highest from the second epoch
    on; a killed run resumes into the same epochs."""
    mined: list[np.ndarray] = []
    mine = loop_module.hardest_negatives

    def spy(*args, **kwargs):
        mined.append(mine(*args, **kwargs))
        return mined[-1]

    monkeypatch.setattr(loop_module, "hardest_negatives", spy)
    params = tiny_params(hard_negative_fraction=0.5, max_epochs=3)
    uninterrupted = train(*split, params, progress=False)
    # 2 steps of 4 draws, half of them negatives: 2 hard ones an epoch, epochs 2 and 3
    labels = SliceDataset(split[0], in_channels=3).labels
    assert [len(m) for m in mined] == [2, 2] and not labels[np.concatenate(mined)].any()

    mined.clear()
    last = TorchCheckpointDataset(filepath=str(tmp_path / "last.pt"))
    train(*split, params.model_copy(update={"max_epochs": 1}), last_checkpoint=last,
          progress=False)  # fmt: skip
    assert not mined
    resumed = train(*split, params.model_copy(update={"resume": True}), last_checkpoint=last,
                    progress=False)  # fmt: skip
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[columns], uninterrupted.history[columns])
    _assert_same_weights(resumed.model.state_dict(), uninterrupted.model.state_dict())
    with pytest.raises(ValidationError, match="hard_negative_fraction"):
        tiny_params(hard_negative_fraction=1.0)


def test_training_on_memory_mapped_stacks_matches_in_memory(split, uninterrupted, tmp_path):
    result, *_ = uninterrupted
    mapped = []
    for stacks in split:
        for stack in stacks:
            dataset = SliceStackDataset(filepath=str(tmp_path / f"{stack.case_id}.npz"))
            dataset.save(stack)
            mapped.append(dataset.load())
    assert all(isinstance(stack.images, np.memmap) for stack in mapped)
    trained = train(mapped[: len(split[0])], mapped[len(split[0]) :], tiny_params(), progress=False)
    pd.testing.assert_frame_equal(
        trained.history.drop(columns="seconds"), result.history.drop(columns="seconds")
    )
    _assert_same_weights(trained.model.state_dict(), result.model.state_dict())


def test_best_epoch_is_judged_by_a_task_metric_not_the_loss():
    from vertebral_fracture.training.loop import _monitored_score

    assert tiny_params(architecture="multitask").resolved_monitor() == "val_dice"
    assert tiny_params(architecture="baseline").resolved_monitor() == "val_class_pr_auc"
    assert tiny_params(monitor="val_loss").resolved_monitor() == "val_loss"
    val = {"loss": 0.4, "dice": 0.2, "class_pr_auc": float("nan")}
    assert _monitored_score(val, "val_dice") == 0.2
    assert _monitored_score(val, "val_loss") == -0.4  # lower loss scores higher
    assert _monitored_score(val, "val_class_pr_auc") == -math.inf  # no positives: never better


_TRAIN_AND_HASH = """
import hashlib, sys
sys.path.insert(0, "tests")
from test_training import make_stack, tiny_params
from vertebral_fracture.training import train

train_stacks = [make_stack(f"t{i}", n=12, size=64, seed=i) for i in range(3)]
val_stacks = [make_stack("v", n=6, size=64, seed=9)]
params = tiny_params(slice_size=64, batch_size=8, steps_per_epoch=3, seed=int(sys.argv[1]))
result = train(train_stacks, val_stacks, params, progress=False)
digest = hashlib.sha256()
for tensor in result.model.state_dict().values():
    digest.update(tensor.numpy().tobytes())
print(digest.hexdigest())
"""


def _weights_digest(seed: int) -> str:
    """Train in a fresh process (as each benchmark seed runs) and hash every weight."""
    out = subprocess.run(
        [sys.executable, "-c", _TRAIN_AND_HASH, str(seed)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()[-1]


def test_two_trainings_from_one_seed_give_identical_weights_across_processes() -> None:
    first = _weights_digest(5)
    assert _weights_digest(5) == first  # bit for bit, on CPU
    assert _weights_digest(6) != first  # and the seed does matter


def test_importing_the_augmentation_makes_no_network_request():
    """albumentations looks for a newer release online at import unless told not to: a run
    must not reach the network (offline scanners, no phoning home)."""
    probe = textwrap.dedent(
        """
        import socket
        calls = []
        def refuse(*args, **kwargs):
            calls.append(args[:1])
            raise OSError("network use in a test")
        socket.getaddrinfo = socket.create_connection = refuse
        import vertebral_fracture.training.augmentation
        print(len(calls))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    run = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "0", run.stderr
