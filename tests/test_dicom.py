"""DICOM series ingestion on the real CT series in tests/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from vertebral_fracture.cases import ScanError, validate_case
from vertebral_fracture.dicom import main, read_dicom_series

SERIES = Path(__file__).parent / "data" / "real_ct" / "lumbar_ct_dicom"


def test_real_series_reads_in_hu_with_ras_geometry():
    image = read_dicom_series(SERIES)
    assert image.shape == (512, 512, 20)
    np.testing.assert_allclose(image.header.get_zooms(), (0.9765625, 0.9765625, 2.0))
    assert nib.aff2axcodes(image.affine) == ("P", "L", "S")  # rows run anterior->posterior
    first = pydicom.dcmread(sorted(SERIES.iterdir())[0])
    # world position of voxel (0, 0, k) is the top-left pixel of the lowest slice, in RAS
    lowest = min(pydicom.dcmread(p).ImagePositionPatient[2] for p in SERIES.iterdir())
    np.testing.assert_allclose(
        image.affine[:3, 3],
        [-first.ImagePositionPatient[0], -first.ImagePositionPatient[1], lowest],
    )
    data = np.asanyarray(image.dataobj)
    assert data.min() <= -900 and data.max() >= 700  # air and bone in HU
    validate_case(image, None, ct_name="series", mask_name=None)  # passes the pipeline's checks


def test_slices_ordered_by_position_not_file_name(tmp_path):
    shuffled = tmp_path / "series"
    shuffled.mkdir()
    for i, path in enumerate(sorted(SERIES.iterdir(), reverse=True)):
        shutil.copy(path, shuffled / f"{i:03d}.dcm")
    np.testing.assert_array_equal(
        np.asanyarray(read_dicom_series(shuffled).dataobj),
        np.asanyarray(read_dicom_series(SERIES).dataobj),
    )


def test_missing_slice_is_reported(tmp_path):
    gappy = tmp_path / "series"
    shutil.copytree(SERIES, gappy)
    sorted(gappy.iterdir())[7].unlink()
    with pytest.raises(ScanError, match="not evenly spaced"):
        read_dicom_series(gappy)


def test_empty_folder_is_reported(tmp_path):
    with pytest.raises(ScanError, match="no DICOM files"):
        read_dicom_series(tmp_path)


def test_cli_writes_a_case_the_pipelines_find(tmp_path, capsys):
    main([str(SERIES), str(tmp_path / "lumbar_ct.nii.gz")])
    assert nib.load(tmp_path / "lumbar_ct.nii.gz").shape == (512, 512, 20)
    assert "lumbar_ct.nii.gz" in capsys.readouterr().out
