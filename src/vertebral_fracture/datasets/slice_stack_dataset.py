"""Kedro dataset for one case's slice stack in one view (``.npz``, no pickle)."""

from __future__ import annotations

from vertebral_fracture.datasets.arrays_dataset import ArraysDataset
from vertebral_fracture.slicing import SliceStack


class SliceStackDataset(ArraysDataset):
    """Saves a ``SliceStack`` as a compressed ``.npz``; loads it with ``allow_pickle=False``.

    Used per case under a ``PartitionedDataset`` so one view of many cases streams from disk
    (catalog factory ``"{view}.slices"``).
    """

    content = "slice"

    def load(self) -> SliceStack:
        return SliceStack.from_arrays(super().load())

    def save(self, data: SliceStack) -> None:
        super().save(data.to_arrays())
