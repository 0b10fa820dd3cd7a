"""Torch dataset over the slices of several ``SliceStack`` objects (one view).

Each item is ``(image (C, H, W) float32, class_target float32 scalar, mask (1, H, W) float32)``.
With ``in_channels = 2k + 1`` the channels are slices ``i-k .. i+k`` of the same stack, clamped at
the stack's edges (2.5D context). Augmentation is applied jointly to all channels and the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from vertebral_fracture.metrics import LESION_CONNECTIVITY
from vertebral_fracture.slicing import SliceStack
from vertebral_fracture.training.augmentation import SliceAugmenter


def neighbour_indices(index: int, n_slices: int, in_channels: int) -> np.ndarray:
    """Slice indices ``index-k .. index+k`` (k = in_channels // 2), clamped to ``[0, n-1]``."""
    half = in_channels // 2
    return np.clip(np.arange(index - half, index + half + 1), 0, n_slices - 1)


class SliceDataset(Dataset):
    """All slices of ``stacks``; keys are ints or ``(int, augmentation_seed)`` pairs."""

    def __init__(
        self,
        stacks: Sequence[SliceStack],
        in_channels: int = 1,
        augmenter: SliceAugmenter | None = None,
        expected_size: int | None = None,
    ) -> None:
        if in_channels < 1 or in_channels % 2 == 0:
            raise ValueError(f"in_channels must be 1 or odd, got {in_channels}")
        self.stacks = list(stacks)
        self.in_channels = in_channels
        self.augmenter = augmenter
        stack_ids: list[np.ndarray] = []
        slice_ids: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for i, stack in enumerate(self.stacks):
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
            if expected_size is not None and stack.images.shape[1:] != (
                expected_size,
                expected_size,
            ):
                raise ValueError(
                    f"SliceStack {stack.case_id!r} has slices of "
                    f"{stack.images.shape[1]}x{stack.images.shape[2]}, but slice_size is "
                    f"{expected_size}: re-slice the data or change slice_size"
                )
            n = len(stack.images)
            stack_ids.append(np.full(n, i, dtype=np.int64))
            slice_ids.append(np.arange(n, dtype=np.int64))
            labels.append(stack.labels)
        self._stack_ids = np.concatenate(stack_ids) if stack_ids else np.zeros(0, np.int64)
        self._slice_ids = np.concatenate(slice_ids) if slice_ids else np.zeros(0, np.int64)
        self.labels: np.ndarray = (
            np.concatenate(labels).astype(np.uint8) if labels else np.zeros(0, np.uint8)
        )

    def __len__(self) -> int:
        return len(self.labels)

    def lesion_balanced_weights(self) -> np.ndarray:
        """Per-slice sampling weights that give every lesion the same total weight.

        Lesions are the 26-connected components of each stack's mask volume; a slice weighs
        ``sum(1 / slices spanned by each lesion it shows)``, negatives 0. Slice-uniform sampling
        shows a collapse spanning 30 slices ten times as often as a break spanning 3.
        """
        weights = []
        for stack in self.stacks:
            labels, n = ndimage.label(stack.masks > 0, structure=LESION_CONNECTIVITY)
            per_slice = np.zeros(len(labels))
            if n:
                present = np.zeros((len(labels), n + 1), dtype=bool)
                for i, slice_labels in enumerate(labels):
                    present[i, np.unique(slice_labels)] = True
                present = present[:, 1:]
                per_slice = (present / present.sum(axis=0)).sum(axis=1)
            weights.append(per_slice)
        return np.concatenate(weights) if weights else np.zeros(0)

    def __getitem__(
        self, key: int | tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if isinstance(key, tuple):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        stack = self.stacks[self._stack_ids[index]]
        i = int(self._slice_ids[index])
        channels = neighbour_indices(i, len(stack.images), self.in_channels)
        image = np.asarray(stack.images[channels], dtype=np.float32)  # (C, H, W)
        mask = np.asarray(stack.masks[i] > 0, dtype=np.uint8)  # (H, W)
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
