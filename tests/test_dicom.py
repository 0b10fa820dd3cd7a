"""DICOM in and out on the real CT series in tests/data: a series folder is a case, and a
label map on its grid goes back out as a DICOM SEG that references it."""

from __future__ import annotations

import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.conftest import REAL_SERIES as SERIES
from tests.conftest import write_series_as_archived
from vertebral_fracture.cases import ScanError, find_cases, validate_case
from vertebral_fracture.datasets import DicomDataset, ScanFolderDataset
from vertebral_fracture.dicom import main, read_dicom_series, read_series_headers
from vertebral_fracture.pipelines.reporting.nodes import dicom_segmentations


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


def test_a_series_folder_in_the_scan_folder_is_a_case(tmp_path):
    scans = tmp_path / "scans"
    shutil.copytree(SERIES, scans / "patient7" / "case01_ct")
    mask = np.zeros((512, 512, 20), np.uint8)
    nib.save(
        nib.Nifti1Image(mask, read_dicom_series(SERIES).affine), scans / "case01_fracture.nii.gz"
    )
    partitions = ScanFolderDataset(filepath=str(scans)).load()
    assert set(partitions) == {"patient7/case01_ct/", "case01_fracture.nii.gz"}  # no .dcm files
    (case,) = find_cases(list(partitions), str(scans))
    assert (case.case_id, case.ct, case.mask) == (
        "case01",
        "patient7/case01_ct/",
        "case01_fracture.nii.gz",
    )
    np.testing.assert_array_equal(
        np.asanyarray(partitions[case.ct]().dataobj),
        np.asanyarray(read_dicom_series(SERIES).dataobj),
    )
    assert sorted(p.name for p in (scans / "patient7" / "case01_ct").iterdir()) == sorted(
        p.name for p in SERIES.iterdir()
    )  # the scan folder is only read


def test_a_folder_mixing_two_series_is_reported(tmp_path):
    mixed = tmp_path / "series"
    shutil.copytree(SERIES, mixed)
    path = sorted(mixed.iterdir())[3]
    ds = pydicom.dcmread(path)
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(path)
    with pytest.raises(ScanError, match="more than one series"):
        read_dicom_series(mixed)


def _label_map_on_series(series) -> nib.Nifti1Image:
    image = read_dicom_series(series)
    labels = np.zeros(image.shape, np.uint8)
    labels[200:230, 250:270, 6:9] = 1
    labels[300:305, 100:104, 15] = 1
    return nib.Nifti1Image(labels, image.affine)


def test_label_map_goes_out_as_a_seg_on_the_source_grid(tmp_path):
    series = write_series_as_archived(tmp_path / "scans" / "case01")
    labels = _label_map_on_series(series)
    index = [{"case_id": "case01", "ct": "case01/", "split": "test"}]
    lesion = {"case": "case01", "method": "multitask_product", "lesion": 1, "vertebra": "L1"}
    findings = {"lesions": [lesion, {**lesion, "method": "baseline_mean"}], "vertebrae": []}
    segs, documents = dicom_segmentations(
        {"multitask_product/case01": lambda: labels}, findings, index, str(tmp_path / "scans")
    )
    path = tmp_path / "seg" / "multitask_product" / "case01.dcm"
    DicomDataset(filepath=str(path)).save(segs["multitask_product/case01"]())

    seg = hd.seg.segread(path)
    source = read_series_headers(series)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    assert seg.StudyInstanceUID == source[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == source[0].FrameOfReferenceUID
    pixels = seg.get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in source],
        segment_numbers=[1],
        assert_missing_frames_are_empty=True,
    )[..., 0]  # (slices in position order, rows, columns)
    np.testing.assert_array_equal(np.moveaxis(pixels, 0, -1), np.asanyarray(labels.dataobj))
    # the same voxels in world space, read through highdicom's own geometry (LPS)
    volume = seg.get_volume()
    seg_world = _world(volume.affine, volume.array[..., 0] > 0)
    labels_world = _world(np.diag([-1, -1, 1, 1]) @ labels.affine, labels.get_fdata() > 0)
    np.testing.assert_allclose(seg_world, labels_world, atol=1e-3)
    assert pydicom.dcmread(path).Modality == "SEG"

    document = documents["multitask_product/case01"]
    assert document["source_series"]["SeriesInstanceUID"] == source[0].SeriesInstanceUID
    assert document["segmentation"]["sop_instance_uid"] == seg.SOPInstanceUID
    assert document["lesions"] == [lesion]  # this method's findings only


def _world(affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """World coordinates of a mask's voxels, sorted."""
    points = nib.affines.apply_affine(affine, np.argwhere(mask))
    return points[np.lexsort(np.round(points, 3).T)]


def test_a_series_without_uids_gets_no_seg(caplog):
    # the test data's series has blanked study and series UIDs: nothing a SEG could reference
    labels = _label_map_on_series(SERIES)
    index = [{"case_id": "lumbar_ct_dicom", "ct": "lumbar_ct_dicom/", "split": "test"}]
    segs, documents = dicom_segmentations(
        {"multitask_product/lumbar_ct_dicom": lambda: labels},
        {"lesions": [], "vertebrae": []},
        index,
        str(SERIES.parent),
    )
    assert segs == {} and documents == {}
    assert "StudyInstanceUID" in caplog.text and "no DICOM SEG" in caplog.text


def test_a_label_map_off_the_series_grid_is_refused(tmp_path):
    series = write_series_as_archived(tmp_path / "scans" / "case01")
    labels = _label_map_on_series(series)
    moved = labels.affine.copy()
    moved[0, 3] += 5.0  # mm
    shifted = nib.Nifti1Image(np.asanyarray(labels.dataobj), moved)
    index = [{"case_id": "case01", "ct": "case01/", "split": "test"}]
    segs, _ = dicom_segmentations(
        {"m/case01": lambda: shifted},
        {"lesions": [], "vertebrae": []},
        index,
        str(tmp_path / "scans"),
    )
    with pytest.raises(ScanError, match="not on its DICOM series' grid"):
        segs["m/case01"]()
