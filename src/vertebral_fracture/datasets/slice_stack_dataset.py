"""Kedro dataset for one case's slice stack in one view (``.npz``, memory-mapped, no pickle)."""

from __future__ import annotations

from vertebral_fracture.datasets.arrays_dataset import ArraysDataset
from vertebral_fracture.slicing import SliceStack


class SliceStackDataset(ArraysDataset):
    """Saves a ``SliceStack`` as an uncompressed ``.npz``; loads it with ``allow_pickle=False``.

    A local stack loads memory-mapped: its images and masks are read-only ``np.memmap``
    arrays, and training and inference read from disk only the windows they cut, so stacks
    larger than memory work. A remote stack is downloaded and loaded whole. Stacks written
    compressed by earlier versions still load, whole.

    Used per case under a ``PartitionedDataset`` so one view of many cases streams from disk
    (catalog factory ``"{view}.slices"``).
    """

    content = "slice"
    memory_mapped = True

    def load(self) -> SliceStack:
        return SliceStack.from_arrays(super().load())

    def save(self, data: SliceStack) -> None:
        super().save(data.to_arrays())
