"""`make bench`: every model variant through the ordinary pipelines, over training seeds.

1. ``kedro run --env bench --pipelines data_processing``: phantoms, split, slices; and the
   scans of two more test sets: out-of-domain phantoms (``benchmark.out_of_domain``, ranges
   held out of training) and fractures planted into a real vertebra (``benchmark.real_bone``);
   and of a development set, out-of-domain phantoms of another seed
   (``benchmark.development``), the one set that may choose between recipes.
2. Per seed in ``benchmark.seeds``: ``kedro run --env bench --pipelines
   training,inference,fusion,reporting --params seed=<s>``, every variant (proposed, thesis
   baseline, smp peer, ungated ablation) scored by the pipelines' own nodes, then the
   ``evaluate`` pipeline on each extra test set (its own ``output_root``); each run's
   ``metrics.json``, ``score_histograms.npz`` and ``vertebrae.csv`` are kept in
   ``data/bench/seeds/<s>/`` and reused for the same code and parameters (a killed bench
   resumes at its seed).
3. Per test set: mean and spread over seeds; paired bootstrap over test cases and seeds;
   vertebra-level detection per fracture kind where a phantom manifest names the kinds.
4. Speed and memory, one subprocess per measurement, with the pipelines' functions.
5. ``benchmarks/results.json`` (commit, seeds, test cases) and ``docs/benchmarks.md``.

    python benchmarks/run_benchmark.py            # the full run (51 min, 2 cores, native bfloat16)
    python benchmarks/run_benchmark.py --smoke    # tiny sizes in a temp copy (a few minutes)
    python benchmarks/run_benchmark.py --report-only benchmarks/results.json  # docs only
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
# TEST_SETS: the sets beyond the in-domain phantoms (the development set included), each
# scored by the evaluate pipeline after every seed; scans, outputs and kept figures under
# <data_root>/<name>/.
from report import TEST_SETS, markdown  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT_MARK = "BENCH_RESULT "
PIPELINES = ["training", "inference", "fusion", "reporting"]
KEPT = (
    "metrics.json",
    "score_histograms.npz",
    "vertebrae.csv",
)  # per seed, from data/<root>/08_reporting
MANIFEST = "02_intermediate/phantom_manifest.json"  # under a data root: the fracture kinds
logger = logging.getLogger("benchmark")


class StageTimer(dict):
    """Wall time per named stage (``with timer(name):``), logged as each stage ends."""

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        logger.info("=== %s ...", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(time.perf_counter() - start, 1)
            logger.info("=== %s: %.1f s", name, self[name])


# ----------------------------------------------------------------------------- the project


def prepare_smoke_project(folder: Path) -> Path:
    """A throw-away copy of the project's conf with the tiny sizes of ``smoke.yml``."""
    return prepare_project(
        folder, yaml.safe_load(Path(__file__).with_name("smoke.yml").read_text())
    )


def project_copy(folder: Path) -> Path:
    """``folder/project``: the project's configuration (without the user's ``conf/local``
    settings) and an empty data folder, to run the installed package's pipelines in."""
    project = folder / "project"
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / ".telemetry").write_text("consent: false\n")
    (project / "data").mkdir()
    (project / "src").mkdir()  # the package is installed; Kedro only checks the folder exists
    return project


def prepare_project(folder: Path, overrides: dict) -> Path:
    """A throw-away copy of the project's conf whose bench parameters get ``overrides``
    deep-merged; its ``training`` entry is merged into every view's and variant's schedule."""
    from omegaconf import OmegaConf

    from vertebral_fracture.pipelines.views import VIEWS

    project = project_copy(folder)
    bench = project / "conf" / "bench" / "parameters.yml"
    overrides = dict(overrides)
    training = overrides.pop("training", None)
    params = OmegaConf.to_container(OmegaConf.merge(yaml.safe_load(bench.read_text()), overrides))
    for view in VIEWS:  # the file's YAML anchors are resolved copies once loaded
        for variant in params[view].values():
            variant["training"] = {**variant["training"], **(training or {})}
    bench.write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def run_kedro(project: Path, pipelines: list[str], params: dict | None = None) -> None:
    """``kedro run --env bench --pipelines <pipelines> --params <params>`` in a fresh process
    (a KedroSession, as the CLI runs it; the CLI's ``--params`` cannot carry a list)."""
    logger.info("kedro run --env bench --pipelines %s --params %s", ",".join(pipelines), params)
    spec = json.dumps({"pipelines": pipelines, "params": params or {}})
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--kedro-run", spec]
    subprocess.run(cmd, cwd=project, env=env, check=True)


def _kedro_run(spec: dict) -> None:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(Path.cwd())
    with KedroSession.create(env="bench", runtime_params=spec["params"]) as session:
        session.run(pipeline_names=spec["pipelines"])


def bench_context(project: Path, env: str = "bench") -> Any:
    """The Kedro context of the bench environment (or ``env``); cwd must be ``project``."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    bootstrap_project(project)
    return KedroSession.create(project_path=project, env=env).load_context()


def plain_params(context: Any) -> dict:
    """The context's parameters as plain nested dicts (Kedro may hand back pydantic models)."""

    def plain(value: Any) -> Any:
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dict(context.params))


CODE = ("src", "conf", "pyproject.toml", "benchmarks/run_benchmark.py", "benchmarks/report.py")


def source_commit() -> dict:
    """The commit the bench runs on, whether its code differs from it, and the code's hash
    (what a kept seed must match: committing results or docs does not invalidate it)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    tree = git("ls-tree", "-r", "HEAD", "--", *CODE)
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", *CODE)),
        "code": hashlib.sha256(tree.encode()).hexdigest()[:16],
    }


# ----------------------------------------------------------------------------- stages 1-2


def run_seeds(project: Path, params: dict, fingerprint: str, timer: StageTimer) -> dict[int, Path]:
    """Every training seed through the pipelines; returns seed -> folder of its kept outputs.

    The first seed trains every variant; the others those of ``benchmark.seed_variants``
    (the proposed model and the peer: the comparison the seeds must power).
    """
    bench, root = params["benchmark"], project / params["data_root"]
    folders = {}
    for i, seed in enumerate(bench["seeds"]):
        folder = root / "seeds" / str(seed)
        stamp = folder / "run.json"
        if stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            logger.info("seed %s: kept from an earlier run of this code and configuration", seed)
        else:
            runtime = {"seed": seed, **({"variants": bench["seed_variants"]} if i else {})}
            with timer(f"seed {seed}: pipelines {','.join(PIPELINES)}, {runtime}"):
                run_kedro(project, PIPELINES, runtime)
            keep(root, folder)
            for name in TEST_SETS:
                with timer(f"seed {seed}: evaluate on {name}"):
                    scans = {
                        "raw_dir": str(root / name / "01_raw"),
                        "output_root": str(root / name),
                    }
                    run_kedro(project, ["evaluate"], {**runtime, **scans})
                keep(root / name, folder / name)
            stamp.write_text(json.dumps({"fingerprint": fingerprint, "seed": seed}))
        folders[seed] = folder
    return folders


def keep(output_root: Path, folder: Path) -> None:
    """Copy a run's figures (``KEPT``) out of ``output_root`` before the next run replaces them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        shutil.copy(output_root / "08_reporting" / name, folder / name)


def phantom_sets(bench: dict) -> dict[str, dict]:
    """Phantom set parameters of the scored sets that are phantoms: the out-of-domain test
    set and the development set (its parameters with ``benchmark.development`` replaced)."""
    ood = bench["out_of_domain"]
    return {"out_of_domain": ood, "development": {**ood, **bench["development"]}}


def write_test_sets(params: dict, root: Path) -> None:
    """The scans of ``TEST_SETS`` as NIfTI in ``root/<name>/01_raw``: out-of-domain and
    development phantoms from the data_processing pipeline's own node, fractures planted
    into a real vertebra."""
    from vertebral_fracture.datasets import NiftiDataset
    from vertebral_fracture.phantoms import PhantomSetParams
    from vertebral_fracture.pipelines.data_processing.nodes import generate_phantoms
    from vertebral_fracture.planting import planted_cases

    bench = params["benchmark"]
    scans_of = {}
    for name, set_params in phantom_sets(bench).items():
        scans_of[name], manifest, preview = generate_phantoms(PhantomSetParams(**set_params))
        preview.savefig(root / f"{name}_preview.png", dpi=80)
        (root / name / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
        (root / name / MANIFEST).write_text(json.dumps(manifest))
    real = dict(bench["real_bone"])
    paths = {key: ROOT / real.pop(key) for key in ("scan", "vertebrae", "subregions")}
    scans_of["real_bone"] = planted_cases(**paths, **real)
    for name, scans in scans_of.items():
        folder = root / name / "01_raw"
        shutil.rmtree(folder, ignore_errors=True)  # a smaller set leaves no stale cases
        for case, image in scans.items():
            NiftiDataset(filepath=str(folder / f"{case}.nii.gz")).save(image)


def fingerprint_of(params: dict, commit: dict) -> str:
    """What a kept seed must match to be reused: the code and every parameter."""
    code = {"code": commit["code"], "dirty": commit["dirty"]}
    blob = json.dumps({"params": params, **code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- stage 3


def summarise(folders: dict[int, Path], params: dict, manifest: Path | None = None) -> dict:
    """Per method: mean, spread and per-seed figures; paired bootstrap over cases and seeds;
    with a phantom ``manifest``, vertebra-level detection per fracture kind."""
    import pandas as pd

    from vertebral_fracture.datasets import ArraysDataset
    from vertebral_fracture.evaluation import histograms_from_arrays
    from vertebral_fracture.findings import detection_by_kind
    from vertebral_fracture.metrics import bootstrap_average_precision

    per_seed = {
        s: json.loads((f / "metrics.json").read_text())["methods"] for s, f in folders.items()
    }
    seeds = list(per_seed)  # the first trained every variant
    methods = sorted(per_seed[seeds[0]])
    rows = {}
    for method in methods:
        entries = [per_seed[s][method] for s in seeds if method in per_seed[s]]
        figures = {
            "pr_auc": [e["pr_auc"] for e in entries],
            "recall": [e["recall"] for e in entries],  # at the validation threshold
            "f1": [e["f1"] for e in entries],
            "bloat": [e["bloat"] for e in entries],
            **{f"froc_{rate}": [e["froc"].get(rate) for e in entries] for rate in ("1", "2")},
            **{key: [e.get(key) for e in entries] for key in ("vertebra_auc", "patient_auc")},
        }
        rows[method] = {key: _spread(values) for key, values in figures.items()}
        rows[method]["seeds"] = [s for s in seeds if method in per_seed[s]]
    if manifest is not None and manifest.exists():
        kinds = {
            (case["case_id"], fracture["vertebra"]): fracture["kind"]
            for case in json.loads(manifest.read_text())
            for fracture in case["fractures"]
        }
        for method in methods:
            per_kind = [
                detection_by_kind(table[table["method"] == method].to_dict("records"), kinds)
                for table in (pd.read_csv(f / "vertebrae.csv") for f in folders.values())
                if method in set(table["method"])
            ]
            rows[method]["by_kind"] = {
                kind: {
                    "n": per_kind[0][kind]["n"],
                    **{k: _spread([p[kind][k] for p in per_kind]) for k in ("sensitivity", "auc")},
                }
                for kind in per_kind[0]
            }
    histograms = {
        s: histograms_from_arrays(ArraysDataset(filepath=str(f / "score_histograms.npz")).load())
        for s, f in folders.items()
    }
    cases = sorted(histograms[seeds[0]][methods[0]])
    runs = {
        m: [[histograms[s][m][c] for c in cases] for s in seeds if m in histograms[s]]
        for m in methods
    }
    bench = params["benchmark"]
    samples = bootstrap_average_precision(
        runs, n_resamples=int(bench["bootstrap_resamples"]), seed=0
    )
    proposed = params["reporting"]["proposed"]
    differences = {}
    for other in methods:
        if other == proposed:
            continue
        delta = samples[proposed] - samples[other]
        delta = delta[np.isfinite(delta)]  # resamples without a positive voxel say nothing
        low, high = np.percentile(delta, [2.5, 97.5])
        differences[other] = {
            "ci95": [float(low), float(high)],
            "p_proposed_higher": float(np.mean(delta > 0)),
            "verdict": "higher" if low > 0 else "lower" if high < 0 else "tie",
        }
    for method in methods:
        rows[method]["pr_auc"]["ci95"] = np.nanpercentile(samples[method], [2.5, 97.5]).tolist()
    return {
        "methods": rows,
        "bootstrap": {
            "unit": "test case x training seed (paired: the same draws for every method)",
            "resamples": int(bench["bootstrap_resamples"]),
            "proposed": proposed,
            "proposed_minus": differences,
        },
        "n_test_cases": len(cases),
        "test_cases": cases,
    }


def _spread(values: list) -> dict:
    """Mean and sample standard deviation over seeds (None where undefined), and the values."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return {
        "mean": float(np.mean(finite)) if finite else None,
        "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
        "per_seed": values,
    }


# ----------------------------------------------------------------------------- stage 4: speed


def measure(spec: dict) -> dict:
    """One speed/memory measurement named by ``spec["kind"]`` in this (fresh) process."""
    kinds = {"train_speed": _measure_train_speed, "infer_speed": _measure_infer_speed}
    return kinds.get(spec["kind"], _measure_pr_auc)(spec)


def run_measurement(spec: dict, project: Path) -> dict:
    """``measure(spec)`` in a subprocess (cwd ``project``) so its memory peak is its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", json.dumps(spec)]
    logger.info("measuring %s", spec)
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"measurement {spec} failed:\n{proc.stderr[-4000:]}")
    line = [s for s in proc.stdout.splitlines() if s.startswith(RESULT_MARK)][-1]
    logger.info("  -> %s", line[len(RESULT_MARK) :])
    return json.loads(line[len(RESULT_MARK) :])


def _peak_rss_mb() -> float:
    """High-water resident set size of this process in MB (Linux ``VmHWM``, reset at exec;
    ``ru_maxrss`` would carry the forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure_train_speed(spec: dict) -> dict:
    """Seconds per training step of one axial model in ``train_view_model`` (one epoch of
    ``1 + steps`` steps, ``spec["training"]`` over its parameters): the median interval
    between the starts of consecutive optimizer steps, i.e. a step with its data loading and
    augmentation, without model building, loading or validation."""
    import torch

    from vertebral_fracture.pipelines.training.nodes import train_view_model
    from vertebral_fracture.training import TrainingParams, loop

    context = bench_context(Path.cwd())
    catalog, params = context.catalog, plain_params(context)
    variant, steps = spec["variant"], int(spec["steps"])
    index = catalog.load("case_index")
    cases = [r for r in index if r["split"] == "train"][:8]
    cases += [r for r in index if r["split"] == "val"][:1]
    training = params["axial"][variant]["training"]
    training = {
        **training,
        **spec.get("training", {}),
        "max_epochs": 1,
        "steps_per_epoch": 1 + steps,
    }
    starts, step = [], loop.train_step

    def timed_step(*args: Any, **kwargs: Any) -> float:
        starts.append(time.perf_counter())
        return step(*args, **kwargs)

    loop.train_step = timed_step  # the loop's own step, timed where train() calls it
    with tempfile.TemporaryDirectory() as folder:
        p = TrainingParams.model_validate(training)
        train_view_model(
            catalog.load("axial.slices"), cases, p, folder, view="axial", variant=variant
        )
    seconds = float(np.median(np.diff(starts)))
    gpu = {}
    if torch.cuda.is_available():
        gpu = {"peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
    return {
        "train_s_per_step": round(seconds, 4),
        "train_slices_per_s": round(p.batch_size / seconds, 2),
        "peak_mem_mb": round(_peak_rss_mb(), 1),
        **gpu,
    }


def _measure_infer_speed(spec: dict) -> dict:
    """Seconds to infer one test volume in the three views with ``predict_view``'s loaders
    (slice-wise prediction and resampling onto the scan grid); best of two."""
    from vertebral_fracture.pipelines.inference.nodes import InferenceParams, predict_view
    from vertebral_fracture.pipelines.views import VIEWS
    from vertebral_fracture.training import TrainingParams

    context = bench_context(Path.cwd())
    catalog, params = context.catalog, plain_params(context)
    variant = spec["variant"]
    index = catalog.load("case_index")
    record = next(r for r in index if r["split"] == "test")
    inference = InferenceParams.model_validate({**params["inference"], "splits": ["test"]})
    loaders = [
        predict_view(
            catalog.load(f"{view}.slices"),
            catalog.load(f"{view}.{variant}.model"),
            [record],
            TrainingParams.model_validate(params[view][variant]["training"]),
            inference,
            view=view,
        )[record["case_id"]]
        for view in VIEWS
    ]
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        for load in loaders:
            load()
        timings.append(time.perf_counter() - start)
    return {
        "infer_s_per_volume": round(min(timings), 3),
        "case": record["case_id"],
        "peak_mem_mb": round(_peak_rss_mb(), 1),
    }


def _measure_pr_auc(spec: dict) -> dict:
    """PR-AUC of ``voxels`` scores: ours (histogram) or scikit-learn's, time and extra memory."""
    rng = np.random.default_rng(7077)  # ~1 % positives, scoring higher
    labels = rng.random(int(spec["voxels"]), dtype=np.float32) < 0.01
    scores = rng.random(labels.size, dtype=np.float32) * 0.6 + labels * np.float32(0.4)
    before = _peak_rss_mb()
    start = time.perf_counter()
    if spec["kind"] == "pr_auc_ours":
        from vertebral_fracture.metrics import ScoreHistogram, average_precision

        ap = average_precision(ScoreHistogram.from_arrays(scores, labels))
    else:
        from sklearn.metrics import average_precision_score

        ap = float(average_precision_score(labels, scores))
    seconds = time.perf_counter() - start
    return {"s": round(seconds, 3), "mem_mb": round(_peak_rss_mb() - before, 1), "ap": ap}


def measure_fusion(shape: list[int], repeats: int) -> dict:
    """Best-of-``repeats`` seconds: product of three float32 volumes vs one ``ndarray.copy``."""
    from vertebral_fracture.fusion import fuse

    volumes = [np.random.default_rng(i).random(tuple(shape), dtype=np.float32) for i in range(3)]
    best = {}
    for name, work in (("fusion_s", lambda: fuse(volumes, "product")), ("copy_s", volumes[0].copy)):
        best[name] = min(timeit.repeat(work, number=1, repeat=repeats))
    return {"shape": list(shape), **best, "ratio": best["fusion_s"] / best["copy_s"]}


def measure_large_scan(project: Path, spec: dict) -> dict:
    """Seconds of the ``evaluate`` pipeline (preprocessing, inference, fusion, reporting) on
    one large scan built from a phantom (``spec``: shape, spacing_mm, seed), with the
    proposed variant's trained models."""
    from vertebral_fracture.datasets import NiftiDataset
    from vertebral_fracture.phantoms import PhantomSetParams, generate_phantom_set

    folder = project / "data" / "large_scan"
    scans = folder / "scans"
    (phantom,) = generate_phantom_set(
        PhantomSetParams(n_cases=1, fracture_free_fraction=0.0, case_prefix="large", **spec)
    )
    shutil.rmtree(folder, ignore_errors=True)
    for kind, image in (("ct", phantom.ct), ("fracture", phantom.fracture_mask)):
        NiftiDataset(filepath=str(scans / f"{phantom.case_id}_{kind}.nii.gz")).save(image)
    run = {"raw_dir": str(scans), "output_root": str(folder / "outputs"), "variants": ["multitask"]}
    start = time.perf_counter()
    run_kedro(project, ["evaluate"], run)
    return {
        "shape": list(phantom.ct.shape),
        "spacing_mm": [round(float(z), 3) for z in phantom.ct.header.get_zooms()[:3]],
        "evaluate_s_per_scan": round(time.perf_counter() - start, 1),
    }


def measure_speed(project: Path, params: dict, timer: StageTimer) -> dict:
    """Every speed/memory measurement, models and PR-AUC each in a subprocess of its own.

    Training steps are timed in float32, whatever the schedule says, so every variant and
    every bench compare like for like; on a CPU that computes bfloat16 natively the proposed
    model's step with ``cpu_bfloat16`` is timed beside its float32 step."""
    from vertebral_fracture.training.loop import cpu_computes_bfloat16

    bench = params["benchmark"]

    def train_speed(variant: str, bfloat16: bool) -> dict:
        spec = {"kind": "train_speed", "variant": variant, "steps": bench["speed_steps"]}
        return run_measurement({**spec, "training": {"cpu_bfloat16": bfloat16}}, project)

    models = {}
    with timer("speed: training step and inference per volume, per variant"):
        for variant in params["variants"]:
            train = train_speed(variant, bfloat16=False)
            infer = run_measurement({"kind": "infer_speed", "variant": variant}, project)
            models[variant] = {
                **train,
                **{k: v for k, v in infer.items() if k != "peak_mem_mb"},
                "infer_peak_mem_mb": infer["peak_mem_mb"],
            }
    bfloat16 = None
    if cpu_computes_bfloat16() and "multitask" in models:
        with timer("speed: a training step in bfloat16 on this CPU"):
            fast = train_speed("multitask", bfloat16=True)
        float32 = models["multitask"]["train_s_per_step"]
        bfloat16 = {
            "float32_s_per_step": float32,
            "bfloat16_s_per_step": fast["train_s_per_step"],
            "speedup": round(float32 / fast["train_s_per_step"], 2),
        }
    with timer("speed: PR-AUC ours vs scikit-learn, fusion vs copy"):
        n = int(bench["metrics_voxels"])
        pr_auc = {
            kind: run_measurement({"kind": f"pr_auc_{kind}", "voxels": n}, project)
            for kind in ("ours", "sklearn")
        }
        fusion = measure_fusion(bench["fusion_shape"], int(bench["repeats"]))
    with timer("speed: evaluate on one large scan"):
        large = measure_large_scan(project, bench["large_scan"])
    return {
        "models": models,
        "pr_auc": {"voxels": n, **pr_auc},
        "fusion": fusion,
        "large_scan": large,
        "cpu_bfloat16": bfloat16,
    }


# ----------------------------------------------------------------------------- main


def environment() -> dict:
    import torch

    from vertebral_fracture.training import TrainingParams
    from vertebral_fracture.training.loop import cpu_computes_bfloat16

    cpu = f"cpu ({platform.processor() or platform.machine()})"
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        ln.split(":", 1)[1].strip()
        for ln in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if ln.startswith("model name")
    ]
    return {
        "device": "cuda" if torch.cuda.is_available() else cpu,
        "cpu_model": models[0] if models else platform.machine(),
        # CPUs of one model name may differ here, and `cpu_bfloat16` runs change numerics with it
        "cpu_bfloat16_native": cpu_computes_bfloat16(),
        "threads": TrainingParams().resolved_num_threads(),
        **{"cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__},
        "python": platform.python_version(),
        # float results of training depend on these too (augmentation, resampling, metrics)
        "packages": {name: _version(name) for name in PINNED},
    }


#: The packages every `make` install pins (constraints.txt), recorded with each run.
PINNED = tuple(
    line.split("==")[0]
    for line in (ROOT / "constraints.txt").read_text().splitlines()
    if "==" in line and not line.startswith("#")
)


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run(smoke: bool, results_path: Path, docs_path: Path) -> dict:
    """The whole benchmark; returns the results (also written to the two paths). A smoke run
    works in a temporary project copy, removed afterwards (its data take a few GB)."""
    if not smoke:
        return _run(ROOT, smoke, results_path, docs_path)
    folder = Path(tempfile.mkdtemp(prefix="bench_smoke_"))
    try:
        return _run(prepare_smoke_project(folder), smoke, results_path, docs_path)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(folder, ignore_errors=True)


def _run(project: Path, smoke: bool, results_path: Path, docs_path: Path) -> dict:
    timer = StageTimer()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    os.chdir(project)  # catalog paths are relative to the project root
    commit = source_commit()
    with timer("kedro run --pipelines data_processing"):
        run_kedro(project, ["data_processing"])
    context = bench_context(project)
    params = plain_params(context)
    params["data_root"] = context.config_loader["globals"]["data_root"]
    with timer("scored sets: out-of-domain and development phantoms, planted real bone"):
        write_test_sets(params, project / params["data_root"])
    folders = run_seeds(project, params, fingerprint_of(params, commit), timer)
    with timer("summary: mean over seeds, bootstrap over cases and seeds"):
        root = project / params["data_root"]
        summary = summarise(folders, params, root / MANIFEST)
        extra = {
            n: summarise({s: f / n for s, f in folders.items()}, params, root / n / MANIFEST)
            for n in TEST_SETS
        }
    speed = measure_speed(project, params, timer)
    results = {
        **commit,
        "seeds": list(params["benchmark"]["seeds"]),
        "n_test_cases": summary.pop("n_test_cases"),
        **summary,
        **extra,
        "speed": speed,
        "configuration": {
            "variants": params["variants"],
            "phantoms": params["phantoms"],
            "spacing_mm": params["data_processing"]["spacing_mm"],
            "training": params["axial"]["multitask"]["training"],
            "fusion": params["fusion"],
            "benchmark": params["benchmark"],
        },
        "environment": environment(),
        "stage_seconds": dict(timer),
        "started": started,
        "wall_s": round(time.perf_counter() - t0, 1),
        "command": "python benchmarks/run_benchmark.py --smoke" if smoke else "make bench",
        "smoke": smoke,
    }
    for path, text in (
        (results_path, json.dumps(results, indent=1) + "\n"),
        (docs_path, markdown(results)),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    logger.info("wrote %s and %s", results_path, docs_path)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes in a temp project copy")
    parser.add_argument("--results", type=Path, help="results.json path")
    parser.add_argument("--docs", type=Path, help="markdown path")
    parser.add_argument("--report-only", type=Path, help="regenerate the docs from results.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--kedro-run", help=argparse.SUPPRESS)  # internal: one kedro run
    args = parser.parse_args(argv)
    if args.kedro_run:
        _kedro_run(json.loads(args.kedro_run))
        return 0
    if args.measure:
        logging.disable(logging.WARNING)
        print(RESULT_MARK + json.dumps(measure(json.loads(args.measure))), flush=True)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        (args.docs or ROOT / "docs" / "benchmarks.md").write_text(markdown(results))
        return 0
    given = args.results and args.docs
    out = Path(tempfile.mkdtemp(prefix="bench_smoke_out_")) if args.smoke and not given else None
    results_path = (args.results or (out or ROOT / "benchmarks") / "results.json").resolve()
    docs_path = (
        args.docs or (out / "benchmarks.md" if out else ROOT / "docs/benchmarks.md")
    ).resolve()
    results = run(args.smoke, results_path, docs_path)
    logger.info("done in %.1f min", results["wall_s"] / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
