"""data_processing end to end through KedroSession on tiny phantoms, and on the real lumbar CT."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import REAL_CT, REAL_CT_VERTEBRAE
from tests.kedro_project import make_tiny_project, run_pipeline
from vertebral_fracture.datasets import SliceStackDataset
from vertebral_fracture.phantoms import PhantomSetParams
from vertebral_fracture.pipelines.data_processing.nodes import generate_phantoms, index_cases
from vertebral_fracture.pipelines.data_processing.params import DataProcessingParams
from vertebral_fracture.vertebrae import FOUND_BODIES, level_names


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    project = make_tiny_project(tmp_path_factory.mktemp("project"))
    run_pipeline(project, "data_processing")
    return project


def test_phantoms_are_generated_validated_split_and_sliced(processed):
    index = json.loads((processed / "data/02_intermediate/case_index.json").read_text())
    drawn = [r for r in index if not r["twin_of"]]  # the demo draws intact twins too
    assert len(drawn) == 8 and all(r["split"] == "train" for r in index if r["twin_of"])
    assert {r["source"] for r in index} == {"phantom"}
    splits = {r["split"] for r in index}
    assert splits == {"train", "val", "test"}
    assert (processed / "data/08_reporting/phantom_preview.png").stat().st_size > 10_000
    for record in index:
        canonical = nib.load(processed / f"data/03_primary/canonical/{record['case_id']}/ct.nii.gz")
        assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
        np.testing.assert_allclose(canonical.header.get_zooms(), (2.0, 2.0, 2.0))
        for view in ("axial", "coronal", "sagittal"):
            stack = SliceStackDataset(
                filepath=str(
                    processed / f"data/05_model_input/slices/{view}/{record['case_id']}.npz"
                )
            ).load()
            assert stack.images.shape[1:] == (32, 32)
            np.testing.assert_array_equal(
                stack.labels, stack.masks.reshape(len(stack.masks), -1).any(1)
            )
            assert (stack.labels.sum() > 0) == (record["fracture_voxels"] > 0)


def test_real_scan_goes_through_as_inference_only_case(tmp_path):
    project = make_tiny_project(tmp_path / "project")
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(REAL_CT, scans / "lumbar_ct.nii.gz")
    before = (scans / "lumbar_ct.nii.gz").read_bytes()
    run_pipeline(project, "data_processing", params={"raw_dir": str(scans)})
    index = json.loads((project / "data/02_intermediate/case_index.json").read_text())
    assert [(r["case_id"], r["split"], r["mask"], r["source"]) for r in index] == [
        ("lumbar", "test", None, "user")
    ]
    assert (scans / "lumbar_ct.nii.gz").read_bytes() == before  # raw data untouched
    assert sorted(p.name for p in scans.iterdir()) == ["lumbar_ct.nii.gz"]
    stack = SliceStackDataset(
        filepath=str(project / "data/05_model_input/slices/axial/lumbar.npz")
    ).load()
    assert stack.masks is None
    # 122 x 101 x 112 voxels at 3 mm span 363 x 300 x 333 mm: at 2 mm the whole view is kept,
    # the last canonical centre at or past the scan's last one
    assert stack.volume_shape == (183, 151, 168)


def test_levels_of_the_real_scan_are_named_as_its_label_map_says(tmp_path):
    """Given without its label map, the real CT's bodies are found and named from its sacrum
    on the default canonical grid (1.25 mm; at the tiny project's 2 mm the finder splits
    L3), written on the scan's grid, each lying mostly in the label map's vertebra of its
    name."""
    project = make_tiny_project(tmp_path / "project")
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(REAL_CT, scans / "lumbar_ct.nii.gz")
    params = {"raw_dir": str(scans), "data_processing": {"spacing_mm": [1.25, 1.25, 1.25]}}
    run_pipeline(project, "data_processing", params=params, to_outputs=["vertebra_maps"])
    found = nib.load(project / "data/03_primary/vertebrae/lumbar.nii.gz")
    assert found.shape == nib.load(REAL_CT).shape
    found_ids = np.asanyarray(found.dataobj)
    truth = np.asanyarray(nib.load(REAL_CT_VERTEBRAE).dataobj).astype(np.int64)
    names, truth_names = level_names(FOUND_BODIES), level_names("totalsegmentator")
    given = {}
    for label in np.unique(found_ids[found_ids > 0]):
        inside = truth[(found_ids == label) & (truth > 0)]
        given[names[int(label)]] = truth_names[int(np.bincount(inside).argmax())]
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(given)
    assert all(name == true for name, true in given.items()), str(given)


def test_rerun_gives_the_same_outputs(processed):
    first_index = (processed / "data/02_intermediate/case_index.json").read_text()
    first = SliceStackDataset(
        filepath=str(next((processed / "data/05_model_input/slices/axial").glob("*.npz")))
    )
    before = first.load()
    run_pipeline(processed, "data_processing")
    assert (processed / "data/02_intermediate/case_index.json").read_text() == first_index
    after = first.load()
    np.testing.assert_array_equal(after.images, before.images)
    np.testing.assert_array_equal(after.masks, before.masks)


TINY_PHANTOMS = PhantomSetParams(n_cases=8, shape=(32, 32, 32), spacing_mm=(2.0, 2.0, 2.0), seed=11)


def test_intact_twins_train_beside_their_cases_and_leave_the_split_alone():
    phantoms = TINY_PHANTOMS
    params = DataProcessingParams(split={"train": 0.5, "val": 0.25, "test": 0.25})

    def index(with_twins: bool) -> dict[str, dict]:
        scans, manifest, _ = generate_phantoms(
            phantoms.model_copy(update={"intact_twins": with_twins})
        )
        raw = {f"{name}.nii.gz": (lambda image=image: image) for name, image in scans.items()}
        return {r["case_id"]: r for r in index_cases(raw, manifest, "raw", params)}

    plain, paired = index(False), index(True)
    twins = {case: r for case, r in paired.items() if r["twin_of"]}
    assert {case: r["split"] for case, r in paired.items() if case not in twins} == {
        case: r["split"] for case, r in plain.items()
    }
    trained = [c for c, r in plain.items() if r["split"] == "train" and r["fracture_voxels"]]
    fractured = [c for c, r in plain.items() if r["fracture_voxels"]]
    assert trained and len(trained) < len(fractured)  # twins of val and test cases left out
    assert sorted(r["twin_of"] for r in twins.values()) == sorted(trained)
    assert all(r["split"] == "train" and r["fracture_voxels"] == 0 for r in twins.values())


def test_training_only_cases_train_and_leave_validation_and_test_alone():
    params = DataProcessingParams(split={"train": 0.5, "val": 0.25, "test": 0.25})

    def index(extra: int) -> dict[str, dict]:
        more = {"training_only": [{"n_cases": extra}]} if extra else {}
        phantoms = TINY_PHANTOMS.model_copy(update={**more, "intact_twins": True})
        scans, manifest, _ = generate_phantoms(phantoms)
        raw = {f"{name}.nii.gz": (lambda image=image: image) for name, image in scans.items()}
        return {r["case_id"]: r for r in index_cases(raw, manifest, "raw", params)}

    plain, more = index(0), index(4)
    added = more.keys() - plain.keys()
    assert {c for c in added if not c.endswith("_intact")} == {
        f"phantom_{i:04d}" for i in range(8, 12)
    }
    assert all(more[case]["split"] == "train" for case in added)
    assert {c: r["split"] for c, r in more.items() if c in plain} == {
        c: r["split"] for c, r in plain.items()
    }


def test_the_preview_sheet_shows_drawn_cases_not_their_twins():
    every_case_fractured = TINY_PHANTOMS.model_copy(
        update={"n_cases": 4, "fracture_free_fraction": 0.0, "intact_twins": True}
    )
    scans, _, preview = generate_phantoms(every_case_fractured)
    assert any("_intact" in name for name in scans)
    titles = [ax.get_title() for ax in preview.axes]
    assert any("phantom_" in t for t in titles) and not any("_intact" in t for t in titles)
