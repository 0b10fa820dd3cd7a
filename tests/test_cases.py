"""Finding, validating and splitting cases: every bad input gets an error naming the file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import make_image
from vertebral_fracture.cases import ScanError, find_cases, split_cases, validate_case


def test_find_cases_pairs_ct_and_masks_and_ignores_other_files():
    cases = find_cases(
        ["a_ct.nii.gz", "a_fracture.nii.gz", "sub/b_ct.nii", "notes.txt", "a_ct_vertebrae.nii.gz"],
        "raw",
    )
    assert [(c.case_id, c.ct, c.mask) for c in cases] == [
        ("a", "a_ct.nii.gz", "a_fracture.nii.gz"),
        ("b", "sub/b_ct.nii", None),
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "No CT scans found in raw"),
        (["readme.md"], "No CT scans found in raw"),
        (["x/a_ct.nii.gz", "y/a_ct.nii.gz"], "Two files claim case id 'a'"),
        (["a_ct.nii.gz", "b_fracture.nii.gz"], "'b_fracture.nii.gz' has no 'b_ct.nii.gz'"),
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
