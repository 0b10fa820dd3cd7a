"""Kedro dataset for one DICOM file (a SEG, or any pydicom dataset)."""

from __future__ import annotations

import pydicom
from kedro.io.core import DatasetError
from pydicom.errors import InvalidDicomError

from vertebral_fracture.datasets._base import FileDataset


class DicomDataset(FileDataset):
    """Loads and saves one DICOM Part 10 file as a ``pydicom.Dataset``.

    ``save`` writes a temporary file beside the target and renames it, so an interrupted
    run leaves the old file or the new one.
    """

    def load(self) -> pydicom.Dataset:
        try:
            with self._readable() as path:
                return pydicom.dcmread(path)
        except InvalidDicomError as exc:
            raise DatasetError(f"{self.url}: not a DICOM file ({exc}).") from exc

    def save(self, data: pydicom.Dataset) -> None:
        if not isinstance(data, pydicom.Dataset):
            raise DatasetError(
                f"DicomDataset '{self.url}' saves pydicom Datasets, got {type(data).__name__}."
            )
        with self._writable(suffix=".dcm") as tmp:
            data.save_as(tmp, enforce_file_format=True)
