"""DICOM CT series to NIfTI in Hounsfield units, so DICOM scans plug into the pipelines.

python -m vertebral_fracture.dicom <series_folder> <raw_dir>/<case>_ct.nii.gz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from vertebral_fracture.cases import ScanError
from vertebral_fracture.datasets import NiftiDataset

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_dicom_series(folder: str | Path) -> nib.Nifti1Image:
    """Read one CT series (one file per slice) into an int16 HU image with a RAS affine.

    Slices are ordered by their position along the slice normal (not by file name), the
    spacing between slices comes from those positions (it may differ from SliceThickness),
    and RescaleSlope/RescaleIntercept convert stored values to Hounsfield units.

    Raises:
        ScanError: naming the folder or file: no DICOM files, mixed series, missing geometry,
            unequal slice spacing.
    """
    folder = Path(folder)
    datasets = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            datasets.append((path, pydicom.dcmread(path)))
        except InvalidDicomError:
            continue
    if not datasets:
        raise ScanError(f"{folder}: no DICOM files found.")
    first_path, first = datasets[0]
    for path, ds in datasets:
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if tag not in ds:
                raise ScanError(f"{path}: missing {tag}; cannot place the slice in space.")
        if ds.get("SeriesInstanceUID") != first.get("SeriesInstanceUID") or (
            ds.ImageOrientationPatient != first.ImageOrientationPatient
        ):
            raise ScanError(
                f"{folder}: files from more than one series ({first_path.name}, {path.name})."
            )
    orientation = np.array(first.ImageOrientationPatient, dtype=float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([np.dot(normal, ds.ImagePositionPatient) for _, ds in datasets])
    order = np.argsort(positions)
    gaps = np.diff(positions[order])
    if len(gaps) and (gaps.min() <= 0 or np.ptp(gaps) > 0.01 * gaps.mean() + 1e-3):
        raise ScanError(
            f"{folder}: slices are not evenly spaced (gaps {np.unique(np.round(gaps, 3))} mm)."
        )
    slice_gap = float(gaps.mean()) if len(gaps) else float(first.get("SliceThickness", 1.0))
    volume = np.stack(
        [
            datasets[i][1].pixel_array.astype(np.float32)
            * float(datasets[i][1].get("RescaleSlope", 1))
            + float(datasets[i][1].get("RescaleIntercept", 0))
            for i in order
        ],
        axis=-1,
    )  # (rows, columns, slices)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    # array axis 0 = rows (moving along the column direction), axis 1 = columns (row direction)
    lps[:3, 0] = col_dir * row_spacing
    lps[:3, 1] = row_dir * col_spacing
    lps[:3, 2] = normal * slice_gap
    lps[:3, 3] = np.array(datasets[order[0]][1].ImagePositionPatient, dtype=float)
    affine = _LPS_TO_RAS @ lps
    image = nib.Nifti1Image(np.round(volume).astype(np.int16), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", type=Path, help="folder with the DICOM files of one CT series")
    parser.add_argument("output", type=Path, help="output <case>_ct.nii.gz (written atomically)")
    args = parser.parse_args(argv)
    if not args.output.name.endswith(("_ct.nii.gz", "_ct.nii")):
        parser.error("output must be named <case>_ct.nii.gz so the pipelines find it")
    image = read_dicom_series(args.series)
    NiftiDataset(filepath=str(args.output)).save(image)
    print(f"{args.output}: {image.shape} voxels, spacing {image.header.get_zooms()} mm")


if __name__ == "__main__":
    main()
