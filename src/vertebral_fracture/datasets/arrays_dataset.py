"""Kedro datasets of named numpy arrays in a compressed ``.npz`` (written atomically, no pickle)."""

from __future__ import annotations

import zipfile

import numpy as np
from kedro.io.core import DatasetError

from vertebral_fracture.datasets._base import FileDataset


class ArraysDataset(FileDataset):
    """A ``dict[str, np.ndarray]`` as one compressed ``.npz``, loaded without pickle."""

    #: what the file holds, for error messages
    content = "array"

    def load(self) -> dict[str, np.ndarray]:
        try:
            with self._readable() as path, np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise DatasetError(f"{self.url}: corrupt {self.content} file ({exc}).") from exc

    def save(self, data: dict[str, np.ndarray]) -> None:
        with self._writable(suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:  # a file object stops numpy appending another .npz
                np.savez_compressed(handle, **data)
