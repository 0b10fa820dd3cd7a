"""The default `kedro run` on tiny phantoms, then `evaluate` on the real lumbar CT."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
import yaml

from tests.conftest import PATIENT_NAME, REAL_CT, REAL_CT_VERTEBRAE, write_series_as_archived
from tests.kedro_project import ROOT, VARIANTS, make_tiny_project, run_pipeline
from vertebral_fracture.findings import LESION_COLUMNS, VERTEBRA_COLUMNS
from vertebral_fracture.fusion import smooth_log_scores
from vertebral_fracture.pipelines.views import VIEWS
from vertebral_fracture.vertebrae import level_names

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = make_tiny_project(tmp_path_factory.mktemp("project"))
    run_pipeline(path)  # the default pipeline: phantoms to report
    return path


def _index(project):
    return json.loads((project / "data/02_intermediate/case_index.json").read_text())


def test_metrics_json_has_the_documented_shape(project):
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    methods = metrics["methods"]
    assert {
        "baseline_mean",
        "multitask_product",
        "multitask_mean",
        "baseline_product",
        "ungated_product",  # a variant the parameters add runs like the others
    } <= set(methods)
    for entry in methods.values():
        assert {"pr_auc", "precision", "recall", "f1", "threshold", "dice", "froc", "bloat"} <= set(
            entry
        )
        assert {"vertebra_auc", "vertebra_sensitivity", "vertebra_specificity", "patient_auc"} <= (
            set(entry)
        )
        assert entry["vertebrae"] > 0 and entry["patients"] == metrics["dataset"]["cases"]
        assert set(entry["froc"]) == {"0.5", "1", "2", "4", "8"}
        assert 0.0 <= entry["pr_auc"] <= 1.0
    tests = [r for r in _index(project) if r["split"] == "test" and r["mask"]]
    assert metrics["dataset"]["cases"] == len(tests)
    assert metrics["dataset"]["positive_voxels"] == sum(r["fracture_voxels"] for r in tests)
    assert {(c["case"], c["method"]) for c in metrics["cases"]} == {
        (r["case_id"], m) for r in tests for m in methods
    }
    assert all({"case", "method", "pr_auc", "f1"} <= set(c) for c in metrics["cases"])
    # a lesion to detect is a fracture, however many pieces its mask falls into
    manifest = json.loads((project / "data/02_intermediate/phantom_manifest.json").read_text())
    fractures = {m["case_id"]: sum(f["voxels"] > 0 for f in m["fractures"]) for m in manifest}
    assert {c["case"]: c["gt_lesions"] for c in metrics["cases"]} == {
        r["case_id"]: fractures[r["case_id"]] for r in tests
    }


def test_every_view_and_variant_has_a_safe_loading_checkpoint(project):
    for view in VIEWS:
        for variant in VARIANTS:
            checkpoint = torch.load(
                project / f"data/06_models/{variant}/{view}_best.pt", weights_only=True
            )
            assert checkpoint["params"]["architecture"] == (
                "multitask" if variant == "ungated" else variant
            )
            assert checkpoint["params"]["attention_gates"] is (variant != "ungated")
            assert {"model_state_dict", "epoch"} <= set(checkpoint)
            # the state to resume from lives in the "last" checkpoint
            resumable = torch.load(
                project / f"data/06_models/{variant}/{view}_last.pt", weights_only=True
            )
            assert {"optimizer_state_dict", "scheduler_state_dict"} <= set(resumable)


def test_probability_volumes_lie_on_each_input_scans_grid(project):
    for record in (r for r in _index(project) if r["split"] in ("val", "test")):
        scan = nib.load(project / "data/01_raw" / record["ct"])
        for view in VIEWS:
            for variant in VARIANTS:
                folder = project / f"data/07_model_output/probabilities/{variant}/{view}"
                probability = nib.load(folder / f"{record['case_id']}.nii.gz")
                assert probability.shape == scan.shape
                np.testing.assert_allclose(probability.affine, scan.affine, atol=1e-5)
                data = probability.get_fdata()
                assert data.dtype == np.float64 and probability.get_data_dtype() == np.float32
                assert 0.0 <= data.min() and data.max() <= 1.0


def test_fusion_outputs_and_validation_thresholds(project):
    thresholds = json.loads((project / "data/06_models/fusion_thresholds.json").read_text())
    assert {"multitask_product", "baseline_mean"} <= set(thresholds)
    test_case = next(r for r in _index(project) if r["split"] == "test")
    fused = nib.load(
        project
        / f"data/07_model_output/fused/multitask/multitask_product/{test_case['case_id']}.nii.gz"
    )
    views = [
        nib.load(
            project
            / f"data/07_model_output/probabilities/multitask/{v}/{test_case['case_id']}.nii.gz"
        ).get_fdata()
        for v in VIEWS
    ]
    # the product of the views, its evidence pooled over the configured mm in the log domain
    fusion = yaml.safe_load((project / "conf/base/parameters_fusion.yml").read_text())["fusion"]
    sigma = fusion["log_smoothing_mm"] / np.asarray(fused.header.get_zooms()[:3])
    expected = smooth_log_scores(np.prod(views, axis=0).astype(np.float32), sigma)
    np.testing.assert_allclose(fused.get_fdata(), expected, rtol=1e-4)
    labels = nib.load(
        project / f"data/07_model_output/label_maps/multitask_product/{test_case['case_id']}.nii.gz"
    )
    np.testing.assert_array_equal(
        labels.get_fdata() > 0, fused.get_fdata() >= thresholds["multitask_product"]
    )
    rules = json.loads((project / "data/06_models/lesion_candidate_rules.json").read_text())
    assert set(rules) == set(thresholds)
    assert all(0 < r["threshold"] <= 1 and r["growth_decades"] >= 0 for r in rules.values())
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())["methods"]
    for method, rule in rules.items():
        assert metrics[method]["lesion_threshold"] == rule["threshold"]
        assert metrics[method]["lesion_growth_decades"] == rule["growth_decades"]


def test_report_is_self_contained(project):
    report = (project / "data/08_reporting/report.html").read_text()
    assert 'src="http' not in report and 'href="http' not in report
    assert report.count("data:image/png;base64,") >= 4
    attention = sorted((project / "data/08_reporting/attention").glob("*_attention.png"))
    assert attention and all(p.stem.removesuffix("_attention") in report for p in attention)
    assert (project / "data/08_reporting/comparison.md").read_text().count("|") > 20


def test_findings_tables_name_the_vertebrae_of_every_test_case(project):
    reporting = project / "data/08_reporting"
    vertebrae = pd.read_csv(reporting / "vertebrae.csv")
    lesions = pd.read_csv(reporting / "findings.csv")
    assert list(vertebrae.columns) == list(VERTEBRA_COLUMNS)
    assert list(lesions.columns) == list(LESION_COLUMNS)
    document = json.loads((reporting / "findings.json").read_text())
    assert len(document["vertebrae"]) == len(vertebrae) and len(document["lesions"]) == len(lesions)
    methods = set(json.loads((reporting / "metrics.json").read_text())["methods"])
    tests = [r for r in _index(project) if r["split"] == "test"]
    assert all(r["vertebrae"] and r["vertebra_convention"] == "totalsegmentator" for r in tests)
    for record in tests:
        labels = nib.load(project / "data/01_raw" / record["vertebrae"])
        levels = {level_names("totalsegmentator")[int(i)] for i in np.unique(labels.dataobj) if i}
        rows = vertebrae[vertebrae["case"] == record["case_id"]]
        assert set(rows["method"]) == methods
        assert all(set(group["vertebra"]) == levels for _, group in rows.groupby("method"))
        # centroids in the scan's world box
        corners = nib.affines.apply_affine(
            labels.affine, np.array([[0, 0, 0], np.array(labels.shape) - 1])
        )
        low, high = corners.min(axis=0) - 1, corners.max(axis=0) + 1
        xyz = rows[["x_mm", "y_mm", "z_mm"]].to_numpy()
        assert ((xyz >= low) & (xyz <= high)).all()
    # the call: the score at the method's validation threshold, or Genant grade >= 2 (default)
    thresholds = json.loads((project / "data/06_models/vertebra_thresholds.json").read_text())
    by_score = vertebrae["fracture_probability"] >= vertebrae["method"].map(thresholds)
    by_height = vertebrae["grade"].fillna(0) >= 2
    assert (vertebrae["fractured"] == (by_score | by_height)).all()
    expected = np.select(
        [by_score & by_height, by_score, by_height], ["score+height", "score", "height"], ""
    )
    assert (vertebrae["called_by"].fillna("") == expected).all()
    report = (reporting / "report.html").read_text()
    assert report.index("What was found") < report.index("<h2>Summary")
    assert all(r["case_id"] in report for r in tests)


def test_training_one_namespace_retrains_that_view_only_and_identically(project):
    models = project / "data/06_models"
    before = {p: p.stat().st_mtime_ns for p in models.rglob("*.pt")}
    weights = torch.load(models / "multitask/axial_best.pt", weights_only=True)["model_state_dict"]
    run_pipeline(project, "training", namespaces=["axial"])
    changed = {
        p.relative_to(models).as_posix()
        for p in models.rglob("*.pt")
        if p.stat().st_mtime_ns != before[p]
    }
    assert changed == {
        f"{variant}/axial_{kind}.pt" for variant in VARIANTS for kind in ("best", "last")
    }
    # same inputs, same seed, on CPU: the same weights again
    again = torch.load(models / "multitask/axial_best.pt", weights_only=True)["model_state_dict"]
    assert all(torch.equal(again[name], tensor) for name, tensor in weights.items())


def test_notebook_loads_catalog_entries(project):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebooks = project / "notebooks"
    notebooks.mkdir(exist_ok=True)
    notebook = nbformat.read(ROOT / "notebooks/explore_results.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=300, resources={"metadata": {"path": str(notebooks)}}
    ).execute()
    outputs = [
        o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the overlay figure


def test_evaluate_scores_a_new_folder_and_keeps_real_ct_geometry(project, tmp_path, capfd, caplog):
    scans, out = tmp_path / "scans", tmp_path / "evaluation"
    scans.mkdir()
    case = "lumbar<img src=x onerror=alert(1)>"  # a file name must not inject HTML into the report
    shutil.copy(REAL_CT, scans / f"{case}_ct.nii.gz")
    shutil.copy(REAL_CT_VERTEBRAE, scans / f"{case}_ct_vertebrae.nii.gz")
    series = write_series_as_archived(scans / "patient7" / "series_case")  # a DICOM case
    own = [
        project / "data/02_intermediate/case_index.json",
        project / "data/08_reporting/metrics.json",
    ]
    before = [path.read_bytes() for path in own]
    run_pipeline(project, "evaluate", params={"raw_dir": str(scans), "output_root": str(out)})
    assert [path.read_bytes() for path in own] == before  # the environment's outputs stay
    scan = nib.load(REAL_CT)
    for variant in VARIANTS:
        for view in VIEWS:
            prob = nib.load(out / f"07_model_output/probabilities/{variant}/{view}/{case}.nii.gz")
            assert prob.shape == scan.shape
            np.testing.assert_allclose(prob.affine, scan.affine, atol=1e-5)
    fused = nib.load(out / f"07_model_output/fused/multitask/multitask_product/{case}.nii.gz")
    assert fused.shape == scan.shape
    metrics = json.loads((out / "08_reporting/metrics.json").read_text())
    assert metrics["dataset"]["cases"] == 0  # no mask: pictures, no metrics
    levels = pd.read_csv(out / "08_reporting/vertebrae.csv").query(
        "method == 'multitask_product' and case == @case"
    )
    # the levels of its label map, from the skull down (TotalSegmentator ids)
    assert list(levels["vertebra"]) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert levels["ground_truth"].isna().all()  # no fracture mask: verdicts, no truth
    report = (out / "08_reporting/report.html").read_text()
    assert "lumbar&lt;img src=x onerror=alert(1)&gt;" in report
    assert "<img src=x" not in report

    # the DICOM series folder was a case of its own; its label map goes out as a DICOM SEG
    (record,) = [
        r
        for r in json.loads((out / "02_intermediate/case_index.json").read_text())
        if r["case_id"] == "series_case"
    ]
    assert record["ct"] == "patient7/series_case/"
    labels = nib.load(out / "07_model_output/label_maps/multitask_product/series_case.nii.gz")
    seg = hd.seg.segread(out / "07_model_output/dicom_seg/multitask_product/series_case.dcm")
    source = sorted(
        (pydicom.dcmread(p) for p in series.iterdir()),
        key=lambda d: float(d.ImagePositionPatient[2]),
    )
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    pixels = seg.get_pixels_by_source_instance(
        [d.SOPInstanceUID for d in source], segment_numbers=[1]
    )
    np.testing.assert_array_equal(np.moveaxis(pixels[..., 0], 0, -1), np.asanyarray(labels.dataobj))
    document = json.loads(
        (out / "08_reporting/dicom_findings/multitask_product/series_case.json").read_text()
    )
    assert document["segmentation"]["sop_instance_uid"] == seg.SOPInstanceUID
    # nothing from the headers but geometry and UIDs reaches logs, tables or the report
    written = [
        p.read_text()
        for p in (out / "08_reporting").rglob("*")
        if p.suffix in {".json", ".csv", ".html", ".md"}
    ]
    captured = capfd.readouterr()
    for text in [*written, captured.out, captured.err, caplog.text]:
        assert PATIENT_NAME.split("^")[0] not in text


def test_parallel_runner_infers_and_fuses_as_the_serial_run(project, tmp_path):
    copy = tmp_path / "parallel"
    shutil.copytree(project, copy)
    shutil.rmtree(copy / "data/07_model_output")
    thresholds = [
        f"data/06_models/{name}.json"
        for name in ("fusion_thresholds", "lesion_candidate_rules", "vertebra_thresholds")
    ]
    for name in thresholds:
        (copy / name).unlink()
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    kedro = Path(sys.executable).with_name("kedro")
    for pipeline in ("inference", "fusion"):  # from a fresh process, as the README shows
        run = subprocess.run(
            [str(kedro), "run", "--pipeline", pipeline, "--runner", "ParallelRunner"]
            + ["--runner-params", "max_workers=2"],
            cwd=copy, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
    outputs = [
        path.relative_to(project)
        for folder in ("probabilities", "fused", "label_maps")
        for path in sorted((project / "data/07_model_output" / folder).rglob("*.nii.gz"))
    ]
    assert outputs and all((copy / path).is_file() for path in outputs)
    for path in outputs:
        np.testing.assert_array_equal(
            np.asanyarray(nib.load(copy / path).dataobj),
            np.asanyarray(nib.load(project / path).dataobj),
        )
    for name in thresholds:
        assert json.loads((copy / name).read_text()) == json.loads((project / name).read_text())


def test_kedro_viz_build_lists_the_pipelines_offline(project):
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    kedro = Path(sys.executable).with_name("kedro")
    subprocess.run(
        [str(kedro), "viz", "build"], cwd=project, env=env, check=True, capture_output=True
    )
    main = json.loads((project / "build/api/main").read_text())
    pipelines = {p["id"] for p in main["pipelines"]}
    assert {"data_processing", "training", "inference", "fusion", "reporting"} <= pipelines
    tasks = [n["name"] for n in main["nodes"] if n.get("type") == "task"]
    assert tasks.count("train_view_model") == 3 * len(VARIANTS)  # per view and variant
    assert {"generate_phantoms", "index_cases", "predict_view", "render_html_report"} <= set(tasks)


def test_runs_are_tracked_with_mlflow_only_where_configured(project, tmp_path):
    assert not (project / "mlruns").exists()  # the default run had no mlflow.yml
    tracked = tmp_path / "tracked"
    shutil.copytree(project, tracked)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = {
        "name": "tiny",
        "create_experiment_kwargs": {"artifact_location": (tmp_path / "artifacts").as_uri()},
    }
    (tracked / "conf/local/mlflow.yml").write_text(
        yaml.safe_dump(
            {
                "server": {"mlflow_tracking_uri": store},
                "tracking": {
                    "experiment": experiment,
                    "run": {"nested": False},
                    "params": {"dict_params": {"flatten": True, "recursive": True}},
                },
            }
        )
    )
    run_pipeline(tracked, "training", namespaces=["axial.multitask"])
    run_pipeline(tracked, "reporting")

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("tiny")
    training, reporting = sorted(
        client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time
    )
    assert training.data.params["axial.multitask.training.seg_loss"] == "focal_tversky"
    history = client.get_metric_history(training.info.run_id, "axial.multitask.train_loss")
    assert [m.step for m in history] == [1]  # one epoch in the tiny project
    models = client.list_artifacts(training.info.run_id, "models/axial.multitask")
    assert [a.path for a in models] == ["models/axial.multitask/axial_best.pt"]
    metrics = json.loads((tracked / "data/08_reporting/metrics.json").read_text())
    logged = reporting.data.metrics
    assert logged["multitask_product.pr_auc"] == pytest.approx(
        metrics["methods"]["multitask_product"]["pr_auc"]
    )
    assert "multitask_product.froc_at_1" in logged
    assert "report.html" in [a.path for a in client.list_artifacts(reporting.info.run_id)]
