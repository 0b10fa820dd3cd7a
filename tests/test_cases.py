"""Finding, validating and splitting cases: every bad input gets an error naming the file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import make_image
from vertebral_fracture.cases import (
    ScanError,
    find_cases,
    split_cases,
    validate_case,
    validate_vertebra_map,
)


def test_find_cases_pairs_ct_masks_and_vertebra_maps_and_ignores_other_files():
    cases = find_cases(
        ["a_ct.nii.gz", "a_fracture.nii.gz", "sub/b_ct.nii", "notes.txt", "b_vertebrae.nii"],
        "raw",
    )
    assert [(c.case_id, c.ct, c.mask, c.vertebrae) for c in cases] == [
        ("a", "a_ct.nii.gz", "a_fracture.nii.gz", None),
        ("b", "sub/b_ct.nii", None, "b_vertebrae.nii"),
    ]


def test_a_vertebra_map_named_after_the_scan_file_belongs_to_its_case():
    """TotalSegmentator users name the map after the scan: lumbar_ct_vertebrae.nii.gz."""
    (case,) = find_cases(["lumbar_ct.nii.gz", "lumbar_ct_vertebrae.nii.gz"], "raw")
    assert (case.case_id, case.vertebrae) == ("lumbar", "lumbar_ct_vertebrae.nii.gz")


def _labels(data, affine=None) -> nib.Nifti1Image:
    return make_image(np.asarray(data), np.eye(4) if affine is None else affine)


def test_a_valid_vertebra_map_comes_back_as_integer_ids():
    data = np.zeros((8, 8, 8), np.float32)
    data[2:6, 2:6, 2:4], data[2:6, 2:6, 5:7] = 31, 30  # L1, L2
    labels = validate_vertebra_map(
        _labels(data), _ct(), name="a_vertebrae.nii.gz", ct_name="a_ct.nii.gz",
        convention="totalsegmentator",
    )  # fmt: skip
    assert labels.get_data_dtype() == np.int16
    assert set(np.unique(np.asanyarray(labels.dataobj))) == {0, 30, 31}


@pytest.mark.parametrize(
    ("labels", "convention", "message"),
    [
        (_labels(np.zeros((8, 8, 7), np.int16)), "totalsegmentator", "differs from its CT"),
        (_labels(np.zeros((8, 8, 8), np.int16), np.diag([2, 1, 1, 1])), "verse", "voxel grid"),
        (_labels(np.full((8, 8, 8), 0.5, np.float32)), "verse", "non-integer"),
        (_labels(np.full((8, 8, 8), 20, np.int16)), "totalsegmentator", r"ids \[20\] are not"),
        (_labels(np.full((8, 8, 8), 31, np.int16)), "verse", "set data_processing.vertebra_labels"),
    ],
)
def test_bad_vertebra_maps_get_errors_naming_the_file(labels, convention, message):
    with pytest.raises(ScanError, match=message) as error:
        validate_vertebra_map(
            labels, _ct(), name="a_vertebrae.nii.gz", ct_name="a_ct.nii.gz", convention=convention
        )
    assert "a_vertebrae.nii.gz" in str(error.value)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "No CT scans found in raw"),
        (["readme.md"], "No CT scans found in raw"),
        (["x/a_ct.nii.gz", "y/a_ct.nii.gz"], "Two files claim case id 'a'"),
        (["a_ct.nii.gz", "b_fracture.nii.gz"], "'b_fracture.nii.gz' has no 'b_ct.nii.gz'"),
        (["a_ct.nii.gz", "b_vertebrae.nii.gz"], "Vertebra label map without CT in raw"),
    ],
)
def test_find_cases_errors_name_the_problem(files, message):
    with pytest.raises(ScanError, match=message):
        find_cases(files, "raw")


def _ct(shape=(8, 8, 8), affine=None) -> nib.Nifti1Image:
    data = np.full(shape, -1000, np.int16)
    data[2:6, 2:6, 2:6] = 400
    return make_image(data, np.eye(4) if affine is None else affine)


def test_valid_case_passes_and_keeps_grid():
    mask = make_image(np.zeros((8, 8, 8), np.uint8), np.eye(4))
    ct, out_mask = validate_case(_ct(), mask, ct_name="a_ct.nii.gz", mask_name="a_fracture.nii.gz")
    assert ct.shape == out_mask.shape == (8, 8, 8)


def test_trailing_singleton_dimension_is_accepted():
    data = np.asanyarray(_ct().dataobj)[..., None]
    ct, _ = validate_case(make_image(data, np.eye(4)), None, ct_name="a_ct.nii.gz", mask_name=None)
    assert ct.shape == (8, 8, 8)


@pytest.mark.parametrize(
    ("ct", "mask", "message"),
    [
        (
            make_image(np.zeros((8, 8), np.int16), np.eye(4)),
            None,
            r"a_ct.nii.gz: image has shape \(8, 8\)",
        ),
        (make_image(np.zeros((8, 8, 8, 2), np.int16), np.eye(4)), None, "a 3D volume is required"),
        (
            make_image(
                np.where(np.eye(8)[..., None] > 0, np.nan, 0.0) * np.ones((8, 8, 8)), np.eye(4)
            ),
            None,
            "voxels are NaN or Inf",
        ),
        (
            make_image(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32), np.eye(4)),
            None,
            "not a CT in Hounsfield units",
        ),
        (_ct(), make_image(np.zeros((8, 8, 7), np.uint8), np.eye(4)), "mask shape .* differs"),
        (
            _ct(),
            make_image(np.zeros((8, 8, 8), np.uint8), np.diag([2, 1, 1, 1])),
            "mask affine differs",
        ),
        (
            _ct(),
            make_image((np.arange(512).reshape(8, 8, 8) % 3).astype(np.uint8), np.eye(4)),
            r"not binary \(values 0, 1, 2\)",
        ),
    ],
)
def test_bad_scans_get_clear_errors(ct, mask, message):
    with pytest.raises(ScanError, match=message) as info:
        validate_case(ct, mask, ct_name="a_ct.nii.gz", mask_name="a_fracture.nii.gz")
    assert "a_ct.nii.gz" in str(info.value) or "a_fracture.nii.gz" in str(info.value)


def test_non_binary_mask_is_binarised_only_when_asked(caplog):
    labels = make_image((np.arange(512).reshape(8, 8, 8) % 3).astype(np.uint8), np.eye(4))
    _, mask = validate_case(
        _ct(), labels, ct_name="a_ct", mask_name="a_fracture", binarize_masks=True
    )
    np.testing.assert_array_equal(np.asanyarray(mask.dataobj), np.asanyarray(labels.dataobj) > 0)
    assert "binarised" in caplog.text


def test_split_is_by_case_stratified_and_seeded():
    fracture_voxels = (
        {f"f{i}": 10 for i in range(10)} | {f"n{i}": 0 for i in range(5)} | {"u": None}
    )
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    split = split_cases(fracture_voxels, fractions, seed=3)
    assert split == split_cases(fracture_voxels, fractions, seed=3)
    assert split != split_cases(fracture_voxels, fractions, seed=4)
    assert set(split) == set(fracture_voxels)  # every case in exactly one split
    assert split["u"] == "test"  # inference-only
    for prefix, expected in (
        ("f", {"train": 6, "val": 2, "test": 2}),
        ("n", {"train": 3, "val": 1, "test": 1}),
    ):
        counts = {
            s: sum(1 for c, v in split.items() if c.startswith(prefix) and v == s)
            for s in fractions
        }
        assert counts == expected
