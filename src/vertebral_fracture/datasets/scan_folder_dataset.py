"""Kedro dataset for a folder of scans: NIfTI files, and DICOM series folders as cases."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
from kedro.io.core import DatasetError

from vertebral_fracture import dicom  # module import: dicom itself imports this package
from vertebral_fracture.cases import DICOM_SERIES_SUFFIX
from vertebral_fracture.datasets._base import FileDataset
from vertebral_fracture.datasets.nifti_dataset import load_nifti


class ScanFolderDataset(FileDataset):
    """Reads a folder of scans (searched recursively) as partition id -> lazy image loader.

    - every ``.nii`` / ``.nii.gz`` file is a partition, its id the path relative to the
      folder (as ``PartitionedDataset`` names them);
    - every folder holding DICOM files is one partition ``<relative folder>/`` that loads the
      series as a RAS NIfTI image in HU (``dicom.read_dicom_series``); its other files are
      not listed.

    The folder is only ever read: ``save`` refuses. Hidden files and folders are skipped.
    Local folders only (mount a bucket to read scans from it).

    Example (catalog)::

        raw_scans:
          type: vertebral_fracture.datasets.ScanFolderDataset
          filepath: data/01_raw
    """

    def load(self) -> dict[str, Callable[[], nib.Nifti1Image]]:
        root = self._local_folder()
        if not root.is_dir():
            raise DatasetError(f"{root}: scan folder not found.")
        partitions: dict[str, Callable[[], nib.Nifti1Image]] = {}
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            here = Path(folder)
            visible = sorted(f for f in files if not f.startswith("."))
            if any(dicom.is_dicom_file(here / f) for f in visible if not _is_nifti(f)):
                relative = here.relative_to(root).as_posix()
                partitions[f"{relative}{DICOM_SERIES_SUFFIX}"] = functools.partial(
                    dicom.read_dicom_series, here
                )
            for name in filter(_is_nifti, visible):
                path = here / name
                partitions[path.relative_to(root).as_posix()] = functools.partial(load_nifti, path)
        return partitions

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self.filepath}: the scan folder is read only.")


def _is_nifti(name: str) -> bool:
    return name.endswith((".nii", ".nii.gz"))
