"""`make bench` end to end at tiny sizes (needs the [bench] extra for the smp peer)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vertebral_fracture.phantoms.fractures import KINDS
from vertebral_fracture.training.loop import cpu_computes_bfloat16

pytest.importorskip("segmentation_models_pytorch")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_benchmark_writes_every_figure_the_issue_names(tmp_path):
    results_path, docs_path = tmp_path / "results.json", tmp_path / "benchmarks.md"
    before = set(Path(tempfile.gettempdir()).glob("bench_smoke_*"))
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
    # the temporary project copy (a few GB of data) is gone
    assert set(Path(tempfile.gettempdir()).glob("bench_smoke_*")) == before
    results = json.loads(results_path.read_text())
    assert len(results["commit"]) == 40 and isinstance(results["dirty"], bool)
    assert results["seeds"] == [1, 2]
    assert results["n_test_cases"] == len(results["test_cases"]) >= 1
    methods = results["methods"]
    # the peer and the ablation are ordinary variants of the bench environment
    assert {"multitask_product", "baseline_mean", "smp_product", "ungated_product"} <= set(methods)
    for name, row in methods.items():
        assert {"pr_auc", "recall", "f1", "bloat", "froc_1", "froc_2"} <= set(row)
        # the proposed model and the peer train with every seed, the others with the first
        every_seed = name.startswith(("multitask_", "smp_"))
        assert row["seeds"] == ([1, 2] if every_seed else [1])
        assert len(row["pr_auc"]["per_seed"]) == len(row["seeds"])
        low, high = row["pr_auc"]["ci95"]
        assert low <= high
    boot = results["bootstrap"]
    assert set(boot["proposed_minus"]) == set(methods) - {"multitask_product"}
    for diff in boot["proposed_minus"].values():
        low, high = diff["ci95"]
        assert diff["verdict"] == ("higher" if low > 0 else "lower" if high < 0 else "tie")
    # test sets held out of the training ranges and on real bone, scored by evaluate
    ood, real, dev = results["out_of_domain"], results["real_bone"], results["development"]
    assert ood["n_test_cases"] == 3 and all(c.startswith("ood_") for c in ood["test_cases"])
    assert real["test_cases"] == ["biconcave_30", "crush_30", "intact", "wedge_25", "wedge_40"]
    # the development set: other phantoms of the out-of-domain ranges, to choose recipes on
    assert dev["n_test_cases"] == 3 and all(c.startswith("dev_") for c in dev["test_cases"])
    for extra in (ood, real, dev):
        assert set(extra["methods"]) == set(methods)
        assert extra["methods"]["multitask_product"]["seeds"] == [1, 2]
    # detection per fracture kind where a phantom manifest names the kinds (not real bone)
    for phantom_set in (results, ood):
        for kind, figures in phantom_set["methods"]["multitask_product"]["by_kind"].items():
            assert kind in KINDS and figures["n"] >= 1
            assert all(0 <= s <= 1 for s in figures["sensitivity"]["per_seed"])
    assert "by_kind" not in real["methods"]["multitask_product"]
    for variant in ("multitask", "baseline", "smp", "ungated"):
        speed = results["speed"]["models"][variant]
        assert speed["train_s_per_step"] > 0 and speed["infer_s_per_volume"] > 0
    assert results["speed"]["pr_auc"]["ours"]["ap"] == pytest.approx(
        results["speed"]["pr_auc"]["sklearn"]["ap"], abs=1e-3
    )
    bfloat16 = results["speed"]["cpu_bfloat16"]  # measured where the CPU computes it natively
    assert (bfloat16 is not None) == cpu_computes_bfloat16()
    if bfloat16:
        assert bfloat16["bfloat16_s_per_step"] > 0 and bfloat16["float32_s_per_step"] > 0
    large = results["speed"]["large_scan"]
    assert large["shape"] == [72, 72, 48] and large["evaluate_s_per_scan"] > 0
    docs = docs_path.read_text()
    assert "Large scan: `evaluate`" in docs
    assert ("`cpu_bfloat16: true`" in docs) == (bfloat16 is not None)
    assert "SMOKE RUN" in docs and "paired bootstrap" in docs and results["commit"][:12] in docs
    assert "## Out of domain (3 cases)" in docs and "## Real bone (5 cases)" in docs
    assert "## Development (3 cases)" in docs


def test_cuda_check_runs_the_gpu_path_on_cpu_at_tiny_sizes(tmp_path):
    out = tmp_path / "cuda_check.json"
    script = str(ROOT / "benchmarks/cuda_check.py")
    subprocess.run(
        [sys.executable, script, "--device", "cpu", "--small", "--out", str(out)],
        check=True,
        cwd=ROOT,
    )
    results = json.loads(out.read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert results["commit"] == (head.stdout.strip() or None)
    assert results["device"] == "cpu"
    assert isinstance(results["environment"]["cpu_bfloat16_native"], bool)
    assert results["training"]["train_s_per_step"] > 0
    assert results["large_scan"]["shape"] == [72, 72, 48]
    assert results["large_scan"]["evaluate_s_per_scan"] > 0
