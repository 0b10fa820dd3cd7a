"""DICOM in and out: a CT series read as a NIfTI image in Hounsfield units, and a fracture
label map written back as a DICOM Segmentation (SEG) that references the series.

A series folder in the scan folder is a case by itself (``datasets.ScanFolderDataset``); to
convert one by hand::

    python -m vertebral_fracture.dicom <series_folder> <raw_dir>/<case>_ct.nii.gz

Only geometry and UIDs are read from the headers for logs and reports; the SEG copies the
patient and study modules of its source series, as DICOM requires.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from vertebral_fracture import __version__
from vertebral_fracture.cases import ScanError
from vertebral_fracture.datasets.nifti_dataset import NiftiDataset

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_PREAMBLE_END, _MAGIC = 128, b"DICM"
_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
# SNOMED CT: what the segment shows, in the categories DICOM SEG viewers list
FRACTURE = hd.sr.CodedConcept("125605004", "SCT", "Fracture of bone")
MORPHOLOGICALLY_ABNORMAL = hd.sr.CodedConcept(
    "49755003", "SCT", "Morphologically Abnormal Structure"
)
REFERENCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
SEG_SERIES_NUMBER = 9901  # high, so the SEG sorts after the scanner's own series


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (the 'DICM' marker after the preamble)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(_PREAMBLE_END)
            return handle.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False


def read_series_headers(folder: str | Path, *, pixels: bool = False) -> list[pydicom.Dataset]:
    """The slices of one CT series, ordered by position along the slice normal.

    Headers only unless ``pixels``. The file names do not matter; files that are not DICOM
    are skipped. A missing SOPClassUID or SOPInstanceUID is taken from the file meta
    information, which DICOM requires to hold the same value.

    Raises:
        ScanError: naming the folder or file: no DICOM files, files from more than one series,
            missing geometry, unequal slice spacing (a missing slice).
    """
    folder = Path(folder)
    datasets = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
        except InvalidDicomError:
            continue
        missing = [tag for tag in _GEOMETRY_TAGS if tag not in ds]
        if missing:
            raise ScanError(
                f"{path}: missing {', '.join(missing)}; cannot place the slice in space."
            )
        meta = getattr(ds, "file_meta", None)
        ds.SOPClassUID = ds.get("SOPClassUID") or (meta and meta.get("MediaStorageSOPClassUID"))
        ds.SOPInstanceUID = ds.get("SOPInstanceUID") or (
            meta and meta.get("MediaStorageSOPInstanceUID")
        )
        datasets.append((path, ds))
    if not datasets:
        raise ScanError(f"{folder}: no DICOM files found.")
    first_path, first = datasets[0]
    for path, ds in datasets:
        if ds.get("SeriesInstanceUID") != first.get("SeriesInstanceUID") or (
            ds.ImageOrientationPatient != first.ImageOrientationPatient
        ):
            raise ScanError(
                f"{folder}: files from more than one series ({first_path.name}, {path.name}); "
                "put each series in a folder of its own."
            )
    normal = _slice_normal(first)
    positions = np.array([np.dot(normal, ds.ImagePositionPatient) for _, ds in datasets])
    order = np.argsort(positions, kind="stable")
    gaps = np.diff(positions[order])
    if len(gaps) and (gaps.min() <= 0 or np.ptp(gaps) > 0.01 * gaps.mean() + 1e-3):
        raise ScanError(
            f"{folder}: slices are not evenly spaced (gaps {np.unique(np.round(gaps, 3))} mm): "
            "a slice is missing or duplicated."
        )
    return [datasets[i][1] for i in order]


def read_dicom_series(folder: str | Path) -> nib.Nifti1Image:
    """Read one CT series (one file per slice) into an int16 HU image with a RAS affine.

    Array axes: (rows, columns, slices), slices in the order of ``read_series_headers``.
    The spacing between slices comes from their positions (it may differ from
    SliceThickness), and RescaleSlope/RescaleIntercept convert stored values to HU.

    Raises:
        ScanError: as ``read_series_headers``.
    """
    slices = read_series_headers(folder, pixels=True)
    volume = np.stack(
        [
            ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1))
            + float(ds.get("RescaleIntercept", 0))
            for ds in slices
        ],
        axis=-1,
    )
    affine = series_affine(slices)
    image = nib.Nifti1Image(np.round(volume).astype(np.int16), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image


def series_affine(slices: Sequence[pydicom.Dataset]) -> np.ndarray:
    """RAS affine of a position-ordered series; array axes (rows, columns, slices)."""
    first = slices[0]
    orientation = np.array(first.ImageOrientationPatient, dtype=float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = _slice_normal(first)
    if len(slices) > 1:
        slice_gap = float(
            np.dot(normal, slices[-1].ImagePositionPatient)
            - np.dot(normal, first.ImagePositionPatient)
        ) / (len(slices) - 1)
    else:
        slice_gap = float(first.get("SliceThickness", 1.0))
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    # array axis 0 = rows (moving along the column direction), axis 1 = columns (row direction)
    lps[:3, 0] = col_dir * row_spacing
    lps[:3, 1] = row_dir * col_spacing
    lps[:3, 2] = normal * slice_gap
    lps[:3, 3] = np.array(first.ImagePositionPatient, dtype=float)
    return _LPS_TO_RAS @ lps


def fracture_segmentation(
    labels: nib.Nifti1Image,
    slices: Sequence[pydicom.Dataset],
    *,
    algorithm: str,
    series_instance_uid: str,
    sop_instance_uid: str,
) -> hd.seg.Segmentation:
    """A binary DICOM SEG of the label map ``labels`` (non-zero = fracture), which must lie on
    the grid of the series ``slices`` (position-ordered, as ``read_series_headers`` gives
    them; array axes rows, columns, slices).

    Each frame references its source slice; frames without fracture are left out unless
    nothing was found (a SEG needs one frame).

    Raises:
        ScanError: labels not on the series grid, or a series without Study/Series UIDs.
    """
    rows, columns = int(slices[0].Rows), int(slices[0].Columns)
    if labels.shape != (rows, columns, len(slices)) or not np.allclose(
        labels.affine, series_affine(slices), atol=1e-3
    ):
        raise ScanError(
            f"the {algorithm} label map (shape {labels.shape}) is not on its DICOM series' grid "
            f"({rows}, {columns}, {len(slices)}); rerun the pipelines on the series as it is now."
        )
    missing = missing_reference_uids(slices)
    if missing:
        raise ScanError(f"the series has no {', '.join(missing)}; a SEG cannot reference it.")
    # (frames, rows, columns): frame k is slice k of the series
    fracture = np.ascontiguousarray(np.moveaxis(np.asanyarray(labels.dataobj) > 0, -1, 0))
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="vertebral fracture",
        segmented_property_category=MORPHOLOGICALLY_ABNORMAL,
        segmented_property_type=FRACTURE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=f"vertebral_fracture {algorithm}",
            version=__version__,
            family=pydicom.sr.codedict.codes.DCM.ArtificialIntelligence,
        ),
    )
    return hd.seg.Segmentation(
        source_images=list(slices),
        pixel_array=fracture,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=series_instance_uid,
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer="vertebral_fracture",
        manufacturer_model_name=algorithm,
        software_versions=__version__,
        device_serial_number="none",
        series_description=f"Vertebral fractures ({algorithm})",
        omit_empty_frames=bool(fracture.any()),
    )


def missing_reference_uids(slices: Sequence[pydicom.Dataset]) -> list[str]:
    """The UIDs a SEG needs to reference its source series that the series lacks."""
    return [tag for tag in REFERENCE_UIDS if not slices[0].get(tag)]


def _slice_normal(ds: pydicom.Dataset) -> np.ndarray:
    orientation = np.array(ds.ImageOrientationPatient, dtype=float)
    return np.cross(orientation[:3], orientation[3:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Convert one DICOM CT series to <case>_ct.nii.gz in Hounsfield units."
    )
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
