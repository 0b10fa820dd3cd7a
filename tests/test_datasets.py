"""NIfTI and slice-stack datasets: round trips keep geometry, atomic saves, bad files named."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from kedro.io.core import DatasetError

from tests.conftest import centre_spine, make_image, reorient
from vertebral_fracture.datasets import (
    CsvDataset,
    FigureDataset,
    JsonDataset,
    NiftiDataset,
    SliceStackDataset,
    TextDataset,
)
from vertebral_fracture.slicing import SliceStack, extract_slices


def test_nifti_round_trip_keeps_affine_header_and_data(tmp_path, spine_like_ct):
    ct = reorient(spine_like_ct[0], "LPS")
    dataset = NiftiDataset(filepath=str(tmp_path / "a_ct.nii.gz"))
    dataset.save(ct)
    loaded = dataset.load()
    np.testing.assert_array_equal(loaded.affine, ct.affine)
    np.testing.assert_array_equal(np.asanyarray(loaded.dataobj), np.asanyarray(ct.dataobj))
    assert loaded.get_data_dtype() == np.int16
    assert loaded.header.get_zooms() == ct.header.get_zooms()
    assert list(tmp_path.iterdir()) == [tmp_path / "a_ct.nii.gz"]  # no temporary file left


def test_failed_save_leaves_previous_file(tmp_path, monkeypatch, spine_like_ct):
    path = tmp_path / "a_ct.nii.gz"
    dataset = NiftiDataset(filepath=str(path))
    dataset.save(spine_like_ct[0])
    before = path.read_bytes()

    def crash(image, filename):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        dataset.save(make_image(np.zeros((2, 2, 2), np.int16), np.eye(4)))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_ct.nii.gz"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"this is not an image", "not a readable NIfTI|truncated or corrupt"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_bad_nifti_files_name_the_file(tmp_path, spine_like_ct, content, message):
    path = tmp_path / "b_ct.nii.gz"
    if content == "truncated":
        nib.save(spine_like_ct[0], path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content is not None:
        path.write_bytes(gzip.compress(content))
    with pytest.raises(DatasetError, match=message) as info:
        NiftiDataset(filepath=str(path)).load()
    assert str(path) in str(info.value)


def test_slice_stack_round_trip_without_pickle(tmp_path, spine_like_ct):
    ct, mask = spine_like_ct
    stack = extract_slices(
        "case<1>",
        ct.get_fdata() / 1000.0,
        np.asanyarray(mask.dataobj),
        "coronal",
        32,
        ct.affine,
        spine=centre_spine(ct.shape),
    )
    dataset = SliceStackDataset(filepath=str(tmp_path / "case.npz"))
    dataset.save(stack)
    loaded = dataset.load()
    assert (loaded.case_id, loaded.view, loaded.volume_shape, loaded.offset) == (
        "case<1>",
        "coronal",
        stack.volume_shape,
        stack.offset,
    )
    np.testing.assert_array_equal(loaded.images, stack.images)
    np.testing.assert_array_equal(loaded.masks, stack.masks)
    np.testing.assert_array_equal(loaded.affine, ct.affine)
    np.testing.assert_array_equal(loaded.spine, stack.spine)
    with np.load(tmp_path / "case.npz", allow_pickle=False) as archive:
        assert all(archive[key].dtype != object for key in archive.files)


def _stack(spine_like_ct) -> SliceStack:
    ct, mask = spine_like_ct
    image = ct.get_fdata() / 1000.0
    return extract_slices(
        "c", image, np.asanyarray(mask.dataobj), "axial", 32, spine=centre_spine(ct.shape)
    )


def test_slice_stack_loads_memory_mapped_and_read_only(tmp_path, spine_like_ct):
    stack = _stack(spine_like_ct)
    path = tmp_path / "case.npz"
    SliceStackDataset(filepath=str(path)).save(stack)
    loaded = SliceStackDataset(filepath=str(path)).load()
    for name in ("images", "masks"):
        array = getattr(loaded, name)
        # pages come from the file on access: larger-than-memory stacks never load whole
        assert isinstance(array, np.memmap) and Path(array.filename) == path.resolve()
        assert not array.flags.writeable  # a consumer writing in place fails loudly
        np.testing.assert_array_equal(array, getattr(stack, name))
        assert array.dtype == getattr(stack, name).dtype
    assert list(tmp_path.iterdir()) == [path]  # written atomically: no temporary file left


def test_slice_stacks_written_compressed_by_earlier_versions_still_load(tmp_path, spine_like_ct):
    stack = _stack(spine_like_ct)
    path = tmp_path / "case.npz"
    np.savez_compressed(path, **stack.to_arrays())
    loaded = SliceStackDataset(filepath=str(path)).load()
    assert not isinstance(loaded.images, np.memmap)  # read whole: compressed data cannot map
    np.testing.assert_array_equal(loaded.images, stack.images)
    np.testing.assert_array_equal(loaded.masks, stack.masks)


def test_truncated_slice_file_is_named(tmp_path, spine_like_ct):
    path = tmp_path / "case.npz"
    SliceStackDataset(filepath=str(path)).save(_stack(spine_like_ct))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match="corrupt slice file") as info:
        SliceStackDataset(filepath=str(path)).load()
    assert str(path) in str(info.value)


def test_slice_stack_stored_without_spine_asks_to_reprocess(spine_like_ct):
    ct, _ = spine_like_ct
    stack = extract_slices(
        "old", ct.get_fdata() / 1000.0, None, "axial", 32, spine=centre_spine(ct.shape)
    )
    arrays = stack.to_arrays()
    del arrays["spine"]
    with pytest.raises(ValueError, match="kedro run --pipeline data_processing"):
        SliceStack.from_arrays(arrays)


def test_corrupt_slice_file_is_named(tmp_path):
    path = tmp_path / "case.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="corrupt slice file") as info:
        SliceStackDataset(filepath=str(path)).load()
    assert str(path) in str(info.value)


def test_saved_files_get_normal_permissions(tmp_path, spine_like_ct):
    path = tmp_path / "a_ct.nii.gz"
    NiftiDataset(filepath=str(path)).save(spine_like_ct[0])
    assert path.stat().st_mode & 0o044 == 0o044  # group and others may read, as with open()


def test_report_file_datasets_round_trip(tmp_path):
    from matplotlib.figure import Figure

    table = pd.DataFrame({"case": ["a<b>", "c"], "pr_auc": [0.5, float("nan")]})
    CsvDataset(filepath=str(tmp_path / "t.csv")).save(table)
    pd.testing.assert_frame_equal(CsvDataset(filepath=str(tmp_path / "t.csv")).load(), table)

    JsonDataset(filepath=str(tmp_path / "m.json")).save({"ap": float("nan"), "n": np.int64(3)})
    assert (tmp_path / "m.json").read_text().replace(" ", "").replace(
        "\n", ""
    ) == '{"ap":null,"n":3}'

    TextDataset(filepath=str(tmp_path / "r.html")).save("<p>é</p>")
    assert TextDataset(filepath=str(tmp_path / "r.html")).load() == "<p>é</p>"

    figures = FigureDataset(filepath=str(tmp_path / "plots"))
    figures.save({"one": Figure(), "two": Figure()})
    figures.save({"one": Figure()})  # a smaller set leaves no stale picture
    assert set(figures.load()) == {"one"} and figures.load()["one"].startswith(b"\x89PNG")
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left


@pytest.fixture
def memory_store():
    """fsspec's in-memory file system, emptied after the test."""
    import fsspec

    store = fsspec.filesystem("memory")
    yield store
    store.store.clear()
    store.pseudo_dirs.clear()
    store.pseudo_dirs.append("")


def test_catalog_entries_round_trip_through_fsspec_urls(memory_store, tmp_path, spine_like_ct):
    from kedro.io import DataCatalog

    ct, _ = spine_like_ct
    catalog = DataCatalog.from_config(
        {
            "scan": {
                "type": "vertebral_fracture.datasets.NiftiDataset",
                "filepath": "memory://bucket/scans/a_ct.nii.gz",
            },
            "checkpoint": {
                "type": "vertebral_fracture.datasets.TorchCheckpointDataset",
                "filepath": "memory://bucket/models/best.pt",
            },
            "metrics": {
                "type": "vertebral_fracture.datasets.JsonDataset",
                "filepath": f"file://{tmp_path}/metrics.json",
            },
            "probabilities": {  # a partitioned folder in a bucket
                "type": "partitions.PartitionedDataset",
                "path": "memory://bucket/probabilities",
                "dataset": "vertebral_fracture.datasets.NiftiDataset",
                "filename_suffix": ".nii.gz",
            },
        }
    )
    catalog.save("scan", ct)
    loaded = catalog.load("scan")
    np.testing.assert_array_equal(np.asanyarray(loaded.dataobj), np.asanyarray(ct.dataobj))
    np.testing.assert_array_equal(loaded.affine, ct.affine)
    assert memory_store.exists("memory://bucket/scans/a_ct.nii.gz")

    import torch

    catalog.save("checkpoint", {"weights": torch.arange(3.0), "epoch": 2})
    assert catalog.load("checkpoint")["epoch"] == 2

    catalog.save("metrics", {"pr_auc": float("nan")})
    assert catalog.load("metrics") == {"pr_auc": None}
    assert (tmp_path / "metrics.json").is_file()

    catalog.save("probabilities", {"case01": ct, "case02": ct})
    partitions = catalog.load("probabilities")
    assert sorted(partitions) == ["case01", "case02"]
    assert partitions["case02"]().shape == ct.shape


@pytest.mark.parametrize(
    ("dataset", "value"),
    [
        (JsonDataset, {"a": [1, 2]}),
        (TextDataset, "<html>report</html>"),
        (CsvDataset, pd.DataFrame({"case": ["a"], "pr_auc": [0.5]})),
    ],
)
def test_file_datasets_round_trip_in_a_bucket(memory_store, dataset, value):
    store = dataset(filepath="memory://bucket/out/file.x")
    store.save(value)
    loaded = store.load()
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, value)
    else:
        assert loaded == value


def test_missing_remote_file_is_named(memory_store):
    with pytest.raises(DatasetError, match=r"memory://.*bucket/none.nii.gz: no such file"):
        NiftiDataset(filepath="memory://bucket/none.nii.gz").load()


def test_folder_datasets_refuse_remote_urls(memory_store):
    from vertebral_fracture.datasets import ScanFolderDataset

    with pytest.raises(DatasetError, match="local folders only"):
        ScanFolderDataset(filepath="memory://bucket/scans").load()


def test_remote_slice_stack_downloads_and_loads_whole(memory_store, spine_like_ct):
    stack = _stack(spine_like_ct)
    dataset = SliceStackDataset(filepath="memory://bucket/slices/axial/c.npz")
    dataset.save(stack)
    loaded = dataset.load()
    # the download is temporary, so nothing maps it: the arrays are in memory
    assert not isinstance(loaded.images, np.memmap)
    np.testing.assert_array_equal(loaded.images, stack.images)
    np.testing.assert_array_equal(loaded.masks, stack.masks)
