"""Kedro dataset for NIfTI volumes that keeps the affine and header."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from kedro.io.core import DatasetError

from vertebral_fracture.datasets._base import FileDataset


class NiftiDataset(FileDataset):
    """Loads and saves one ``.nii`` / ``.nii.gz`` volume as a ``nibabel.Nifti1Image``.

    ``load`` reads the voxels into memory (no file handle stays open, so the file may be
    replaced while the image is in use) and keeps affine and header, so every output can be
    written back on the input's voxel grid. ``save`` writes to a temporary file beside the
    target and renames it: an interrupted run leaves the old file or the new one.

    Example (catalog)::

        scan:
          type: vertebral_fracture.datasets.NiftiDataset
          filepath: data/01_raw/case01_ct.nii.gz
    """

    def load(self) -> nib.Nifti1Image:
        with self._readable() as path:
            return load_nifti(path, name=self.url)

    def save(self, data: nib.Nifti1Image) -> None:
        if not isinstance(data, nib.Nifti1Image | nib.Nifti2Image):
            raise DatasetError(
                f"NiftiDataset '{self.url}' saves nibabel Nifti1Image objects, "
                f"got {type(data).__name__}."
            )
        suffix = ".nii.gz" if self.filepath.name.endswith(".nii.gz") else ".nii"
        with self._writable(suffix=suffix) as tmp:
            nib.save(data, tmp)


def load_nifti(path: Path, name: str | None = None) -> nib.Nifti1Image:
    """Read a NIfTI file fully into memory; every failure names the file (``name``, default
    the path) and the problem."""
    name = name or str(path)
    if not Path(path).is_file():
        raise DatasetError(f"{name}: no such file.")
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)  # forces decompression: truncation shows up here
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError) as exc:
        raise DatasetError(f"{name}: not a readable NIfTI image ({exc}).") from exc
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise DatasetError(f"{name}: truncated or corrupt NIfTI file ({exc}).") from exc
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise DatasetError(
            f"{name}: not a NIfTI image (nibabel read it as {type(image).__name__})."
        )
    return type(image)(data, image.affine, image.header)
