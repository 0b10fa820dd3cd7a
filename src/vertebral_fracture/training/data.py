"""Torch dataset over the slices (or spine windows of them) of several ``SliceStack`` objects.

Each item is ``(image (C, h, w) float32, class_target float32 scalar, mask (1, h, w) float32)``,
(h, w) the whole slice or the window.
With ``in_channels = 2k + 1`` the channels are slices ``i-k*s, .., i, .., i+k*s`` of the same
stack (``s`` the context stride), clamped at the stack's edges (2.5D context). Augmentation is
applied jointly to all channels and the mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from vertebral_fracture.metrics import LESION_CONNECTIVITY
from vertebral_fracture.slicing import SliceStack, window_patch
from vertebral_fracture.training.augmentation import SliceAugmenter, thick_slice_weights


def _check_stack(stack: SliceStack) -> None:
    """Raise unless the stack is labelled with masks matching its (N, H, W) images."""
    if stack.masks is None:
        raise ValueError(
            f"SliceStack {stack.case_id!r} ({stack.view}) has no masks: "
            "training and validation need labelled stacks"
        )
    if stack.images.ndim != 3 or stack.masks.shape != stack.images.shape:
        raise ValueError(
            f"SliceStack {stack.case_id!r}: images {stack.images.shape} and masks "
            f"{stack.masks.shape} must be equal (N, H, W)"
        )


def neighbour_indices(index: int, n_slices: int, in_channels: int, stride: int = 1) -> np.ndarray:
    """Slice indices ``index + stride * (-k .. k)`` (k = in_channels // 2), clamped to
    ``[0, n-1]``."""
    half = in_channels // 2
    return np.clip(index + stride * np.arange(-half, half + 1), 0, n_slices - 1)


class SliceDataset(Dataset):
    """Items of ``stacks``: whole slices, or ``window_size`` windows of them (``windows``);
    keys are ints or ``(int, augmentation_seed)`` pairs.

    Args:
        stacks: labelled stacks of one view.
        in_channels: 1 or odd: the slice and its neighbours, all cut with the same window.
        context_stride: slices between neighbouring channels (``neighbour_indices``).
        augmenter: joint image + mask augmentation, or None.
        expected_size: the item side the model is built for (``slice_size``), checked.
        windows: per stack, (M, 3) rows ``(slice index, top, left)`` (``spine_windows``);
            None: every whole slice is an item.
        window_size: side of the windows; required with ``windows``.
    """

    def __init__(
        self,
        stacks: Sequence[SliceStack],
        in_channels: int = 1,
        augmenter: SliceAugmenter | None = None,
        expected_size: int | None = None,
        *,
        context_stride: int = 1,
        windows: Sequence[np.ndarray] | None = None,
        window_size: int | None = None,
    ) -> None:
        if in_channels < 1 or in_channels % 2 == 0:
            raise ValueError(f"in_channels must be 1 or odd, got {in_channels}")
        if context_stride < 1:
            raise ValueError(f"context_stride must be >= 1, got {context_stride}")
        if (windows is None) != (window_size is None):
            raise ValueError("windows and window_size go together")
        self.stacks = list(stacks)
        self.in_channels = in_channels
        self.context_stride = context_stride
        self.augmenter = augmenter
        self.window_size = window_size
        if windows is not None and len(windows) != len(self.stacks):
            raise ValueError(f"{len(windows)} window arrays for {len(self.stacks)} stacks")
        items: list[np.ndarray] = []
        for i, stack in enumerate(self.stacks):
            _check_stack(stack)
            side = (window_size, window_size) if window_size else stack.images.shape[1:]
            if expected_size is not None and tuple(side) != (expected_size, expected_size):
                raise ValueError(
                    f"SliceStack {stack.case_id!r} gives items of {side[0]}x{side[1]}, but "
                    f"slice_size is {expected_size}: re-slice the data or change slice_size"
                )
            if windows is None:
                rows = np.zeros((len(stack.images), 3), np.int64)
                rows[:, 0] = np.arange(len(stack.images))
            else:
                rows = np.asarray(windows[i], np.int64).reshape(-1, 3)
            items.append(np.column_stack([np.full(len(rows), i, np.int64), rows]))
        #: (n_items, 4) rows (stack index, slice index, top, left)
        self._items = np.concatenate(items) if items else np.zeros((0, 4), np.int64)
        self.labels: np.ndarray = np.array(
            [self._mask(n).any() for n in range(len(self._items))], dtype=np.uint8
        )

    def __len__(self) -> int:
        return len(self.labels)

    def _cut(self, planes: np.ndarray, index: int, slices: np.ndarray) -> np.ndarray:
        """(len(slices), h, w) ``planes[slices]`` cut to item ``index``'s window (if any)."""
        _, _, top, left = self._items[index]
        if self.window_size is None:
            return planes[slices]
        return window_patch(planes, slices, int(top), int(left), self.window_size)

    def _mask(self, index: int, masks: np.ndarray | None = None) -> np.ndarray:
        """(h, w) mask window of item ``index`` (of ``masks`` when given: same layout)."""
        stack_id, i = self._items[index, :2]
        planes = self.stacks[stack_id].masks if masks is None else masks
        return self._cut(planes, index, np.array([i]))[0]

    def lesion_balanced_weights(self) -> np.ndarray:
        """Per-item sampling weights that give every lesion the same total weight.

        Lesions are the 26-connected components of each stack's mask volume; an item weighs
        ``sum(1 / items showing the lesion)`` over the lesions inside its mask window,
        negatives 0. Uniform sampling shows a collapse spanning 30 slices ten times as often
        as a break spanning 3.
        """
        weights = np.zeros(len(self._items))
        for stack_id, stack in enumerate(self.stacks):
            labels, n = ndimage.label(stack.masks > 0, structure=LESION_CONNECTIVITY)
            if not n:
                continue
            members = np.flatnonzero(self._items[:, 0] == stack_id)
            present = np.zeros((len(members), n + 1), dtype=bool)
            for row, index in enumerate(members):
                present[row, np.unique(self._mask(index, labels))] = True
            present = present[:, 1:]
            weights[members] = (present / np.maximum(present.sum(axis=0), 1)).sum(axis=1)
        return weights

    def twin_items(self, twin_stacks: Mapping[int, int]) -> np.ndarray:
        """Per item, the index of the same window of its stack's intact twin, -1 where none.

        ``twin_stacks`` maps a twin's stack index to its fractured case's; the two must have
        been cut with the same windows (the fractured case's).
        """
        twins = np.full(len(self), -1, dtype=np.int64)
        for twin, fractured in twin_stacks.items():
            ours = np.flatnonzero(self._items[:, 0] == fractured)
            theirs = np.flatnonzero(self._items[:, 0] == twin)
            if not np.array_equal(self._items[ours, 1:], self._items[theirs, 1:]):
                raise ValueError(
                    f"SliceStack {self.stacks[twin].case_id!r} is not cut with the windows of "
                    f"its fractured case {self.stacks[fractured].case_id!r}"
                )
            twins[ours] = theirs
        return twins

    def _image(self, index: int, seed: int | None) -> np.ndarray:
        """(C, h, w) float32 channels of item ``index``; when the augmenter thickens the slices
        of a view cut across z, each channel is composed from the stack's neighbouring slices
        (``augmentation.thick_slice_weights``)."""
        stack_id, i = (int(n) for n in self._items[index, :2])
        planes = self.stacks[stack_id].images
        channels = neighbour_indices(i, len(planes), self.in_channels, self.context_stride)
        thickening = self.augmenter and self.augmenter.thickening_across_slices(seed)
        if not thickening:
            return np.asarray(self._cut(planes, index, channels), dtype=np.float32)
        weights = thick_slice_weights(channels, len(planes), *thickening)
        used = np.flatnonzero(weights.any(axis=0))
        fine = np.asarray(self._cut(planes, index, used), dtype=np.float32)
        return np.tensordot(weights[:, used], fine, axes=1)

    def __getitem__(
        self, key: int | tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if isinstance(key, tuple):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        image = self._image(index, seed)  # (C, h, w)
        mask = np.asarray(self._mask(index) > 0, dtype=np.uint8)  # (h, w)
        if self.augmenter is not None:
            hwc, mask = self.augmenter(np.ascontiguousarray(image.transpose(1, 2, 0)), mask, seed)
            image = hwc.transpose(2, 0, 1)
            # Label_class is "any fracture pixel": a fracture shifted fully out of view is gone
            label = float(bool(self.labels[index]) and bool(mask.any()))
        else:
            label = float(self.labels[index])
        return (
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            torch.tensor(label, dtype=torch.float32),
            torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None]),
        )
