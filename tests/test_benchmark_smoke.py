"""`make bench` end to end at tiny sizes (needs the [bench] extra for the smp peer)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("segmentation_models_pytorch")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_benchmark_writes_every_figure_the_issue_names(tmp_path):
    results_path, docs_path = tmp_path / "results.json", tmp_path / "benchmarks.md"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/run_benchmark.py"),
            "--smoke",
            "--results",
            str(results_path),
            "--docs",
            str(docs_path),
        ],
        check=True,
        cwd=ROOT,
    )
    results = json.loads(results_path.read_text())
    methods = results["methods"]
    assert {
        "multitask_product",
        "baseline_mean",
        "smp_product",
        "ungated_product",
        "intensity_floor",
    } <= set(methods)
    row_keys = {"pr_auc", "f1", "froc_1", "bloat", "train_slices_per_s", "infer_s_per_volume"}
    assert all(row_keys | {"peak_mem_mb"} <= set(row) for row in methods.values())
    for name in ("multitask_product", "baseline_mean", "smp_product"):
        assert methods[name]["train_slices_per_s"] > 0 and methods[name]["infer_s_per_volume"] > 0
    assert set(results["metrics_speed"]) >= {
        "voxels",
        "ours_s",
        "ours_mem_mb",
        "sklearn_s",
        "sklearn_mem_mb",
    }
    assert set(results["fusion_speed"]) >= {"voxels", "fusion_s", "copy_s"}
    assert set(results["environment"]) >= {"device", "threads", "torch"}
    boot = results["bootstrap"]
    assert set(boot["pr_auc_ci95"]) == set(methods)
    assert all(low is None or low <= high for low, high in boot["pr_auc_difference_ci95"].values())
    for kind, entry in results["lesion_kinds"].items():
        assert kind in {"compression", "burst", "cortical_line"}
        assert set(entry["detected"]) == set(methods)
        assert all(0 <= n <= entry["lesions"] for n in entry["detected"].values())
    docs = docs_path.read_text()
    assert "SMOKE RUN" in docs and "paired bootstrap" in docs and "fracture kind" in docs
