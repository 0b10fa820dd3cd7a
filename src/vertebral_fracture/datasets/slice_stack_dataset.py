"""Kedro dataset for one case's slice stack in one view (``.npz``, no pickle)."""

from __future__ import annotations

import zipfile

import numpy as np
from kedro.io.core import DatasetError

from vertebral_fracture.datasets._atomic import atomic_path
from vertebral_fracture.datasets._base import LocalFileDataset
from vertebral_fracture.slicing import SliceStack


class SliceStackDataset(LocalFileDataset):
    """Saves a ``SliceStack`` as a compressed ``.npz``; loads it with ``allow_pickle=False``.

    Used per case under a ``PartitionedDataset`` so one view of many cases streams from disk
    (catalog factory ``"{view}.slices"``).
    """

    def load(self) -> SliceStack:
        try:
            with np.load(self.filepath, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except FileNotFoundError as exc:
            raise DatasetError(f"{self.filepath}: no such slice file.") from exc
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise DatasetError(f"{self.filepath}: corrupt slice file ({exc}).") from exc
        return SliceStack.from_arrays(arrays)

    def save(self, data: SliceStack) -> None:
        with atomic_path(self.filepath, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:  # a file object stops numpy appending another .npz
                np.savez_compressed(handle, **data.to_arrays())
