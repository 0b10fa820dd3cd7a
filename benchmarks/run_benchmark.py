"""`make bench`: proposed vs thesis baseline vs an off-the-shelf peer, quality and speed, one run.

Stages (each logged with its wall time):

1. ``kedro run --env bench``: phantoms, training of the multitask and baseline models (three
   views each), inference, fusion, reporting, all under ``data/bench/``.
2. Extra models (``benchmark.extra_models``): the peer (``smp.Unet`` resnet18,
   ``smp_product``) and the model ablation without attention gates (``ungated_product``),
   each trained per view with the multitask model's exact training parameters, inferred,
   product-fused and thresholded on the validation cases; a no-learning floor
   (``intensity_floor``: windowed CT inside bone) thresholded the same way. Every method is
   then scored on the same test cases in one pass, with case-level paired bootstrap
   intervals of PR-AUC and lesion detection per phantom fracture kind.
3. Speed and memory, each measurement in its own subprocess so peaks do not mix: training
   slices/s and inference s/volume per model; PR-AUC on 1e8 voxels (ours vs scikit-learn);
   product fusion of three 256^3 volumes vs one copy.
4. ``benchmarks/results.json`` and ``docs/benchmarks.md`` (generated from it).

    python benchmarks/run_benchmark.py            # the full run (~45 min on 2 CPU cores)
    python benchmarks/run_benchmark.py --smoke    # tiny sizes in a temp copy (a few minutes)
    python benchmarks/run_benchmark.py --report-only benchmarks/results.json  # docs only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("axial", "coronal", "sagittal")
RESULT_MARK = "BENCH_RESULT "
PEER_VARIANT = "smp"  # benchmark.extra_models key of the off-the-shelf peer
PEER = f"{PEER_VARIANT}_product"
FLOOR = "intensity_floor"
PROPOSED, BASELINE = "multitask_product", "baseline_mean"
ABLATIONS = ("multitask_product", "multitask_mean", "baseline_product", "baseline_mean")
# method -> architecture whose speed it carries (fusion ablations and the floor carry none)
SPEED_OF = {PROPOSED: "multitask", BASELINE: "baseline", PEER: PEER_VARIANT}
SMOKE_TRAINING = {"slice_size": 32, "batch_size": 4, "max_epochs": 1, "steps_per_epoch": 2}
SMOKE_OVERRIDES: dict[str, Any] = {
    "phantoms": {"n_cases": 10, "shape": [48, 48, 48], "spacing_mm": [1.0, 1.0, 1.0]},
    "data_processing": {
        "min_slice_size": 32,
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
    },
    "inference": {"batch_size": 8},
    "reporting": {"picture_cases": 1},
    **{v: {m: {"training": SMOKE_TRAINING} for m in ("multitask", "baseline")} for v in VIEWS},
    "benchmark": {
        "speed_steps": 2,
        "metrics_voxels": 1_000_000,
        "fusion_shape": [64, 64, 64],
        "bootstrap_resamples": 50,
    },
}

logger = logging.getLogger("benchmark")


# ----------------------------------------------------------------------------- bookkeeping


class StageTimer:
    """Wall time per named stage, logged as each stage ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        logger.info("=== %s ...", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)
            logger.info("=== %s: %.1f s", name, self.seconds[name])


def _rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """High-water resident set size of this process in MB.

    Linux ``VmHWM`` (reset at exec, so a subprocess does not inherit its parent's peak, which
    ``ru_maxrss`` does); ``ru_maxrss`` elsewhere.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _merge(base: dict, extra: dict) -> dict:
    """Deep merge of nested dicts, ``extra`` winning (as Kedro's soft merge of parameters)."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


# ----------------------------------------------------------------------------- the project


def prepare_smoke_project(folder: Path) -> Path:
    """A throw-away copy of the project's conf with tiny bench parameters merged in."""
    project = folder / "project"
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / ".telemetry").write_text("consent: false\n")
    (project / "data").mkdir()
    (project / "src").mkdir()  # the package is installed; Kedro only checks the folder exists
    bench = project / "conf" / "bench" / "parameters.yml"
    merged = _merge(yaml.safe_load(bench.read_text()), SMOKE_OVERRIDES)
    bench.write_text(yaml.safe_dump(merged, sort_keys=False))
    return project


def run_kedro(project: Path) -> None:
    """``kedro run --env bench`` in ``project`` (a subprocess: its logs stream through)."""
    kedro = Path(sys.executable).with_name("kedro")
    cmd = [str(kedro)] if kedro.exists() else [sys.executable, "-m", "kedro"]
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1")
    subprocess.run([*cmd, "run", "--env", "bench"], cwd=project, env=env, check=True)


def bench_context(project: Path) -> Any:
    """The Kedro context of the bench environment (catalog + parameters); cwd must be project."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    bootstrap_project(project)
    return KedroSession.create(project_path=project, env="bench").load_context()


def plain_params(context: Any) -> dict:
    """The context's parameters as plain nested dicts (Kedro may hand back pydantic models)."""

    def plain(value: Any) -> Any:
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dict(context.params))


def extra_training(params: dict, view: str, variant: str) -> dict:
    """An extra model's training parameters: the multitask model's, with its overrides."""
    overrides = params["benchmark"]["extra_models"][variant]
    return {**params[view]["multitask"]["training"], **overrides}


# ----------------------------------------------------------------------------- stage 2: extras


def train_extra_models(context: Any) -> dict[str, Any]:
    """Train the peer and the model ablations per view on the multitask model's slices and
    schedule, each into ``<checkpoint_dir>/<variant>/`` (catalog ``<view>.<variant>.model``)."""
    from vertebral_fracture.datasets import TorchCheckpointDataset
    from vertebral_fracture.pipelines.training.nodes import load_split
    from vertebral_fracture.training import TrainingParams, train

    catalog, params = context.catalog, plain_params(context)
    case_index = catalog.load("case_index")
    summary: dict[str, Any] = {}
    for view in VIEWS:
        slices = catalog.load(f"{view}.slices")
        for variant in params["benchmark"]["extra_models"]:
            training = TrainingParams.model_validate(extra_training(params, view, variant))
            folder = Path(params["checkpoint_dir"]) / variant
            size = training.slice_size
            started = time.perf_counter()
            result = train(
                load_split(slices, case_index, "train", size),
                load_split(slices, case_index, "val", size),
                training,
                last_checkpoint=TorchCheckpointDataset(filepath=str(folder / f"{view}_last.pt")),
                best_checkpoint=TorchCheckpointDataset(filepath=str(folder / f"{view}_best.pt")),
                progress=False,
            )
            summary.setdefault(variant, {})[view] = {
                "best_epoch": result.best_epoch,
                "seconds": round(time.perf_counter() - started, 2),
                "val_dice": result.history["val_dice"].round(4).tolist(),
            }
            logger.info("%s %s: best epoch %d", variant, view, result.best_epoch)
    return summary


def intensity_floor(hu: np.ndarray, params: dict) -> np.ndarray:
    """No-learning score: windowed CT brightness inside bone (HU > floor_bone_hu), else 0."""
    from vertebral_fracture.preprocessing import window

    dp = params["data_processing"]
    score = window(hu, dp["window_level"], dp["window_width"])
    score[hu <= params["benchmark"]["floor_bone_hu"]] = 0.0
    return score


def _array(image: Any) -> np.ndarray:
    return np.asanyarray(image.dataobj, dtype=np.float32)


def score_all_methods(context: Any) -> dict[str, Any]:
    """Every method scored on the same test cases in one pass, with uncertainty and per kind.

    Kedro's fused methods use their stored validation thresholds; the extra models
    (product fusion, as the pipelines do it: per-view probabilities on each scan's native
    grid) and the intensity floor get theirs here, maximising pooled voxel F1 on the
    validation cases. Returns the ``metrics.json``-style summaries, case-level paired
    bootstrap intervals of PR-AUC, and lesion detection per fracture kind.
    """
    from vertebral_fracture.evaluation import (
        choose_lesion_thresholds,
        choose_voxel_thresholds,
        lesion_kinds,
        score_methods,
    )
    from vertebral_fracture.fusion import fuse
    from vertebral_fracture.inference import predict_on_scan_grid
    from vertebral_fracture.metrics import bootstrap_average_precision
    from vertebral_fracture.pipelines.fusion.nodes import fused_by_case
    from vertebral_fracture.training import load_model_from_checkpoint, resolve_device

    catalog, params = context.catalog, plain_params(context)
    bench = params["benchmark"]
    case_index = catalog.load("case_index")
    raw = catalog.load("raw_scans")
    inference = params["inference"]
    device = resolve_device(inference["device"])
    slices = {view: catalog.load(f"{view}.slices") for view in VIEWS}
    extras = {f"{variant}_product": variant for variant in bench["extra_models"]}
    models = {
        (variant, view): load_model_from_checkpoint(catalog.load(f"{view}.{variant}.model"))
        for variant in extras.values()
        for view in VIEWS
    }

    def extra_volume(variant: str, record: dict) -> np.ndarray:
        volumes = [
            predict_on_scan_grid(
                models[variant, view],
                slices[view][record["case_id"]](),
                record,
                in_channels=models[variant, view].in_channels,
                batch_size=inference["batch_size"],
                device=device,
                progress=False,
            )
            for view in VIEWS
        ]
        return fuse([_array(v) for v in volumes], "product")

    def computed(record: dict) -> dict[str, np.ndarray]:
        out = {m: extra_volume(v, record) for m, v in extras.items()}
        out[FLOOR] = intensity_floor(_array(raw[record["ct"]]()), params)
        return out

    labelled = [r for r in case_index if r["mask"]]
    # validation predictions stay in memory (a few val cases): the lesion-threshold search
    # needs each method's voxel threshold, which needs all of them first
    validation = [
        (_array(raw[r["mask"]]()) > 0, {m: _const(p) for m, p in computed(r).items()})
        for r in labelled
        if r["split"] == "val"
    ]
    # chosen as the fusion pipeline chooses them for its own methods
    voxel = choose_voxel_thresholds(validation, (*extras, FLOOR))
    thresholds = {**catalog.load("fusion_thresholds"), **voxel}
    lesion_thresholds = {
        **catalog.load("lesion_thresholds"),
        **choose_lesion_thresholds(validation, voxel),
    }
    del validation

    tests = [r for r in labelled if r["split"] == "test"]
    fused = fused_by_case(tuple(catalog.load(f"{v}.fused") for v in ("multitask", "baseline")))

    def case_predictions(record: dict) -> dict[str, Callable[[], np.ndarray]]:
        loaders = {
            m: (lambda load=load: _array(load())) for m, load in fused[record["case_id"]].items()
        }
        loaders.update({m: _const(p) for m, p in computed(record).items()})
        return loaders

    cases = (
        (r["case_id"], lambda r=r: _array(raw[r["mask"]]()), case_predictions(r)) for r in tests
    )
    scores = score_methods(cases, thresholds, lesion_thresholds, keep_case_histograms=True)
    summaries = {name: s.summary() for name, s in scores.items()}

    samples = bootstrap_average_precision(
        {name: s.case_histograms for name, s in scores.items()},
        n_resamples=int(bench["bootstrap_resamples"]),
        seed=int(params["phantoms"]["seed"]),
    )
    bootstrap = {
        "unit": "test case",
        "resamples": int(bench["bootstrap_resamples"]),
        "pr_auc_ci95": {m: np.nanpercentile(v, [2.5, 97.5]).tolist() for m, v in samples.items()},
        # paired: the same case draws for every method
        "pr_auc_difference_ci95": {
            f"{PROPOSED} - {other}": np.nanpercentile(
                samples[PROPOSED] - samples[other], [2.5, 97.5]
            ).tolist()
            for other in samples
            if other != PROPOSED
        },
        "p_proposed_above": {
            other: float(np.nanmean(samples[PROPOSED] > samples[other]))
            for other in samples
            if other != PROPOSED
        },
    }
    return {
        "methods": summaries,
        "bootstrap": bootstrap,
        "lesion_kinds": detection_by_kind(catalog, raw, tests, scores, lesion_kinds),
    }


def detection_by_kind(
    catalog: Any, raw: Any, tests: list[dict], scores: dict, lesion_kinds: Callable
) -> dict[str, dict]:
    """Per phantom fracture kind: test lesions, and how many each method detects (IoU > 0.2)
    at its validation threshold; kinds come from the phantom manifest (centroids)."""
    import nibabel as nib

    manifest = {entry["case_id"]: entry["fractures"] for entry in catalog.load("phantom_manifest")}
    out: dict[str, dict] = {}
    for i, record in enumerate(tests):
        mask: nib.Nifti1Image = raw[record["mask"]]()
        kinds = lesion_kinds(_array(mask), mask.affine, manifest.get(record["case_id"], []))
        for j, kind in enumerate(kinds):
            entry = out.setdefault(str(kind), {"lesions": 0, "detected": {}})
            entry["lesions"] += 1
            for method, s in scores.items():
                hit = int(s.lesions[i].detected[j])
                entry["detected"][method] = entry["detected"].get(method, 0) + hit
    return out


def _const(value: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: value


# ----------------------------------------------------------------------------- stage 3: speed


def measure(spec: dict) -> dict:
    """Run one speed/memory measurement named by ``spec["kind"]`` in this (fresh) process."""
    kinds = {
        "train_speed": _measure_train_speed,
        "infer_speed": _measure_infer_speed,
        "pr_auc_ours": _measure_pr_auc_ours,
        "pr_auc_sklearn": _measure_pr_auc_sklearn,
    }
    return kinds[spec["kind"]](spec)


def run_measurement(spec: dict, project: Path) -> dict:
    """``measure(spec)`` in a subprocess (cwd ``project``) so its memory peak is its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", json.dumps(spec)]
    logger.info("measuring %s", spec)
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"measurement {spec} failed:\n{proc.stderr[-4000:]}")
    line = [s for s in proc.stdout.splitlines() if s.startswith(RESULT_MARK)][-1]
    result = json.loads(line[len(RESULT_MARK) :])
    logger.info("  -> %s", result)
    return result


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _memory(device: Any, rss_before: float) -> dict:
    import torch

    out = {"peak_mem_mb": round(_peak_rss_mb(), 1), "rss_before_mb": round(rss_before, 1)}
    if device.type == "cuda":
        out["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _training_params(context: Any, variant: str) -> Any:
    from vertebral_fracture.training import TrainingParams

    params = plain_params(context)
    if variant in params["benchmark"]["extra_models"]:
        return TrainingParams.model_validate(extra_training(params, "axial", variant))
    return TrainingParams.model_validate(params["axial"][variant]["training"])


def _measure_train_speed(spec: dict) -> dict:
    """Training slices/s of one model: the training loop's data path and optimizer step.

    Same sampler, augmentation, loss and batch size as ``training.train`` on axial training
    slices (at most 8 cases: throughput does not depend on the dataset size); one warm-up
    step, then ``steps`` timed steps.
    """
    import torch
    from torch.utils.data import DataLoader

    from vertebral_fracture.pipelines.training.nodes import load_split
    from vertebral_fracture.training import (
        BalancedSliceSampler,
        SliceDataset,
        build_augmenter,
        resolve_device,
    )
    from vertebral_fracture.training.loop import (
        MEMORY_FORMAT,
        build_loss,
        build_model_from_params,
        train_step,
    )

    context = bench_context(Path.cwd())
    p = _training_params(context, spec["variant"])
    device = resolve_device(p.device)
    if device.type == "cpu":
        torch.set_num_threads(p.resolved_num_threads())
        torch.use_deterministic_algorithms(True, warn_only=True)
    index = context.catalog.load("case_index")
    train_cases = [r for r in index if r["split"] == "train" and r["mask"]][:8]
    stacks = load_split(context.catalog.load("axial.slices"), train_cases, "train", p.slice_size)
    dataset = SliceDataset(
        stacks, p.in_channels, build_augmenter(p.augmentation, train=True), p.slice_size
    )
    steps = int(spec["steps"])
    sampler = BalancedSliceSampler(
        dataset.labels, (steps + 1) * p.batch_size, p.positive_fraction, p.seed
    )
    loader = DataLoader(dataset, batch_size=p.batch_size, sampler=sampler)
    torch.manual_seed(p.seed)
    model = build_model_from_params(p).to(device, memory_format=MEMORY_FORMAT).train()
    loss_fn = build_loss(p)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.learning_rate)
    amp = p.mixed_precision and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    rss_before = _rss_mb()
    batches = iter(loader)
    train_step(model, next(batches), loss_fn, optimizer, device=device, scaler=scaler, amp=amp)
    step_s = []  # median step time: robust to stalls on a shared machine
    for batch in batches:
        _sync(device)
        start = time.perf_counter()
        train_step(model, batch, loss_fn, optimizer, device=device, scaler=scaler, amp=amp)
        _sync(device)
        step_s.append(time.perf_counter() - start)
    seconds = float(np.median(step_s))
    return {
        "train_slices_per_s": round(p.batch_size / seconds, 3),
        "train_s_per_step": round(seconds, 4),
        "steps": steps,
        "batch_size": p.batch_size,
        "slice_size": p.slice_size,
        **_memory(device, rss_before),
    }


def _measure_infer_speed(spec: dict) -> dict:
    """Seconds to infer one test volume with the trained models of the three views.

    Per view: slice-wise prediction and resampling back to the scan's grid
    (``inference.predict_on_scan_grid``); stacks are read before the clock starts, and
    one warm-up batch runs first.
    """
    import torch

    from vertebral_fracture.inference import predict_on_scan_grid
    from vertebral_fracture.training import load_model_from_checkpoint, resolve_device

    context = bench_context(Path.cwd())
    catalog, params = context.catalog, plain_params(context)
    inference = params["inference"]
    device = resolve_device(inference["device"])
    if device.type == "cpu":
        torch.set_num_threads(_training_params(context, "multitask").resolved_num_threads())
    index = catalog.load("case_index")
    record = next(r for r in index if r["split"] == "test")
    work = []
    for view in VIEWS:
        checkpoint = catalog.load(f"{view}.{spec['variant']}.model")
        model = load_model_from_checkpoint(checkpoint).to(device).eval()
        stack = catalog.load(f"{view}.slices")[record["case_id"]]()
        work.append((model, int(checkpoint["params"]["in_channels"]), stack))
    rss_before = _rss_mb()
    with torch.inference_mode():  # warm-up
        model, channels, stack = work[0]
        x = torch.zeros(1, channels, *stack.images.shape[1:], device=device)
        model.fracture_probability(x)
    timings = []
    for _ in range(2):  # best of two: the machine may be shared
        _sync(device)
        start = time.perf_counter()
        for model, channels, stack in work:
            predict_on_scan_grid(
                model,
                stack,
                record,
                in_channels=channels,
                batch_size=inference["batch_size"],
                device=device,
                progress=False,
            )
        _sync(device)
        timings.append(time.perf_counter() - start)
    seconds = min(timings)
    return {
        "infer_s_per_volume": round(seconds, 3),
        "case": record["case_id"],
        "slices": int(sum(len(s.images) for _, _, s in work)),
        **_memory(device, rss_before),
    }


def synthetic_scores(n: int, seed: int = 7077) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 scores in [0, 1] and bool labels (~1 % positive, scoring higher).

    Built in 4 Mi chunks so generation adds no memory peak above the two output arrays.
    """
    rng = np.random.default_rng(seed)
    scores = np.empty(n, dtype=np.float32)
    labels = np.empty(n, dtype=bool)
    chunk = 1 << 22
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        lab = rng.random(stop - start, dtype=np.float32) < 0.01
        labels[start:stop] = lab
        scores[start:stop] = rng.random(stop - start, dtype=np.float32) * 0.6 + lab * 0.4
    return scores, labels


def _measure_pr_auc_ours(spec: dict) -> dict:
    from vertebral_fracture.metrics import ScoreHistogram, average_precision

    scores, labels = synthetic_scores(int(spec["voxels"]))
    rss_before = _rss_mb()
    start = time.perf_counter()
    ap = average_precision(ScoreHistogram.from_arrays(scores, labels))
    seconds = time.perf_counter() - start
    return {"s": round(seconds, 3), "mem_mb": round(_peak_rss_mb() - rss_before, 1), "ap": ap}


def _measure_pr_auc_sklearn(spec: dict) -> dict:
    from sklearn.metrics import average_precision_score

    scores, labels = synthetic_scores(int(spec["voxels"]))
    rss_before = _rss_mb()
    start = time.perf_counter()
    ap = float(average_precision_score(labels, scores))
    seconds = time.perf_counter() - start
    return {"s": round(seconds, 3), "mem_mb": round(_peak_rss_mb() - rss_before, 1), "ap": ap}


def measure_fusion(shape: list[int], repeats: int) -> dict:
    """Best-of-``repeats`` seconds: product of three float32 volumes vs one ``ndarray.copy``."""
    from vertebral_fracture.fusion import fuse

    rng = np.random.default_rng(7077)
    volumes = [rng.random(tuple(shape), dtype=np.float32) for _ in range(3)]
    fusion_s, copy_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fuse(volumes, "product")
        fusion_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        volumes[0].copy()
        copy_s.append(time.perf_counter() - start)
    return {
        "voxels": int(np.prod(shape)),
        "shape": list(shape),
        "fusion_s": round(min(fusion_s), 5),
        "copy_s": round(min(copy_s), 5),
        "ratio": round(min(fusion_s) / min(copy_s), 2),
    }


def measure_speed(project: Path, params: dict, timer: StageTimer) -> dict:
    """All speed/memory measurements; models and PR-AUC each in a subprocess of their own."""
    bench = params["benchmark"]
    models: dict[str, dict] = {}
    with timer("speed: models (train + infer, one subprocess each)"):
        for variant in ("multitask", "baseline", PEER_VARIANT):
            train = run_measurement(
                {"kind": "train_speed", "variant": variant, "steps": bench["speed_steps"]},
                project,
            )
            infer = run_measurement({"kind": "infer_speed", "variant": variant}, project)
            models[variant] = {"train": train, "infer": infer}
    with timer("speed: PR-AUC ours vs scikit-learn"):
        n = int(bench["metrics_voxels"])
        ours = run_measurement({"kind": "pr_auc_ours", "voxels": n}, project)
        sk = run_measurement({"kind": "pr_auc_sklearn", "voxels": n}, project)
    metrics_speed = {
        "voxels": n,
        "ours_s": ours["s"],
        "ours_mem_mb": ours["mem_mb"],
        "sklearn_s": sk["s"],
        "sklearn_mem_mb": sk["mem_mb"],
        "ap_ours": ours["ap"],
        "ap_sklearn": sk["ap"],
        "ap_abs_diff": abs(ours["ap"] - sk["ap"]),
    }
    with timer("speed: fusion vs copy"):
        fusion_speed = measure_fusion(bench["fusion_shape"], int(bench["repeats"]))
    return {"models": models, "metrics_speed": metrics_speed, "fusion_speed": fusion_speed}


# ----------------------------------------------------------------------------- results


def environment() -> dict:
    import torch

    from vertebral_fracture.training import TrainingParams, resolve_device

    device = resolve_device("auto")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    try:
        import segmentation_models_pytorch as smp

        smp_version = smp.__version__
    except ImportError:
        smp_version = None
    return {
        "device": f"{device.type} ({name or platform.machine()})",
        "threads": TrainingParams().resolved_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "segmentation_models_pytorch": smp_version,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _method_row(summary: dict, speed: dict | None) -> dict:
    row = {
        "pr_auc": summary["pr_auc"],
        "f1": summary["f1"],
        "froc_1": summary["froc"].get("1", float("nan")),
        "bloat": summary["bloat"],
        "threshold": summary["threshold"],
        "train_slices_per_s": None,
        "infer_s_per_volume": None,
        "peak_mem_mb": None,
    }
    if speed:
        row["train_slices_per_s"] = speed["train"]["train_slices_per_s"]
        row["infer_s_per_volume"] = speed["infer"]["infer_s_per_volume"]
        row["peak_mem_mb"] = max(speed["train"]["peak_mem_mb"], speed["infer"]["peak_mem_mb"])
        row["train_peak_mem_mb"] = speed["train"]["peak_mem_mb"]
        row["infer_peak_mem_mb"] = speed["infer"]["peak_mem_mb"]
    return row


def configuration(params: dict, case_index: list[dict], smoke: bool) -> dict:
    training = params["axial"]["multitask"]["training"]
    return {
        "smoke": smoke,
        "cases": {s: sum(r["split"] == s for r in case_index) for s in ("train", "val", "test")},
        "phantoms": params["phantoms"],
        "spacing_mm": params["data_processing"]["spacing_mm"],
        "slice_size": training["slice_size"],
        "batch_size": training["batch_size"],
        "max_epochs": training["max_epochs"],
        "steps_per_epoch": training["steps_per_epoch"],
        "benchmark": params["benchmark"],
    }


def _json_safe(value: Any) -> Any:
    """nan/inf -> None so results.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


# ----------------------------------------------------------------------------- docs


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(results: dict) -> list[dict]:
    """Each target: name, measured value, bound, whether it holds, and the miss when not."""
    m = results["methods"]
    pro = m.get(PROPOSED, {})

    def get(method: str, key: str) -> float | None:
        return m.get(method, {}).get(key)

    ms, fs = results["metrics_speed"], results["fusion_speed"]
    rows = [
        ("PR-AUC vs thesis baseline", _ratio(pro.get("pr_auc"), get(BASELINE, "pr_auc")), ">=", 3),
        ("PR-AUC vs intensity floor", _ratio(pro.get("pr_auc"), get(FLOOR, "pr_auc")), ">=", 3),
        ("PR-AUC vs smp peer", _ratio(pro.get("pr_auc"), get(PEER, "pr_auc")), ">", 1),
        ("bloat", pro.get("bloat"), "<", 3),
        ("FROC sensitivity @1 FP/scan", pro.get("froc_1"), ">=", 0.8),
        (
            "inference time vs peer",
            _ratio(pro.get("infer_s_per_volume"), get(PEER, "infer_s_per_volume")),
            "<=",
            1.2,
        ),
        (
            "training slices/s vs peer",
            _ratio(pro.get("train_slices_per_s"), get(PEER, "train_slices_per_s")),
            ">=",
            0.8,
        ),
        (f"PR-AUC on {ms['voxels']:.0e} voxels: seconds", ms["ours_s"], "<", 5),
        (f"PR-AUC on {ms['voxels']:.0e} voxels: extra MB", ms["ours_mem_mb"], "<", 1024),
        ("fusion time vs copy", _ratio(fs["fusion_s"], fs["copy_s"]), "<=", 3),
    ]
    checks = {">=": np.greater_equal, ">": np.greater, "<": np.less, "<=": np.less_equal}
    out = []
    for name, value, op, bound in rows:
        holds = value is not None and bool(checks[op](value, bound))
        miss = None
        if not holds and value:  # how far off, as a factor >= 1 (None when value is 0)
            miss = bound / value if op[0] == ">" else value / bound
        out.append(
            {"target": name, "value": value, "op": op, "bound": bound, "holds": holds}
            | {"miss_factor": miss}
        )
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "n/a"
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value else f"{value:.{digits}f}"
    return str(value)


def _interval(bounds: list | None) -> str | None:
    return None if not bounds or None in bounds else f"{_fmt(bounds[0])} to {_fmt(bounds[1])}"


def _uncertainty_lines(results: dict) -> list[str]:
    """Paired bootstrap of the proposed method's PR-AUC against every other method."""
    boot = results.get("bootstrap")
    if not boot:
        return []
    lines = [
        "## How sure: paired bootstrap over test cases",
        "",
        f"{boot['resamples']} resamples of the {results['configuration']['cases']['test']} test "
        "cases, the same draws for every method.",
        "",
        f"| {PROPOSED} minus | PR-AUC difference, 95% CI | share of resamples {PROPOSED} "
        "is higher |",
        "|---|---|---|",
    ]
    for key, bounds in boot["pr_auc_difference_ci95"].items():
        other = key.split(" - ", 1)[1]
        lines.append(
            f"| {other} | {_fmt(bounds[0])} to {_fmt(bounds[1])} | "
            f"{_fmt(boot['p_proposed_above'][other])} |"
        )
    return [*lines, ""]


def _kind_lines(results: dict) -> list[str]:
    """Lesions detected per phantom fracture kind at each method's validation threshold."""
    kinds = results.get("lesion_kinds")
    if not kinds:
        return []
    methods = sorted(results["methods"], key=lambda m: -(results["methods"][m]["pr_auc"] or -1))
    lines = [
        "## Lesions detected per fracture kind",
        "",
        "A lesion counts as detected when a candidate (a connected component at the method's "
        "lesion threshold, chosen on validation cases) overlaps it with IoU > 0.2.",
        "",
        "| kind | lesions | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for kind, entry in sorted(kinds.items()):
        counts = [str(entry["detected"].get(m, 0)) for m in methods]
        lines.append(f"| {kind} | {entry['lesions']} | " + " | ".join(counts) + " |")
    return [*lines, ""]


def _analysis_lines() -> list[str]:
    """The hand-written analysis (docs/benchmark_analysis.md), one heading level down."""
    path = ROOT / "docs" / "benchmark_analysis.md"
    if not path.exists():
        return []
    body = path.read_text().splitlines()[1:]  # its own title gives way to the section's
    return [
        "## Analysis: why targets are missed, what was tried (hand-written)",
        "",
        "> Written for the run named in its first line; a new run regenerates the figures "
        "above but not this text.",
        *[f"#{line}" if line.startswith("## ") else line for line in body],
        "",
    ]


def markdown(results: dict) -> str:
    """``docs/benchmarks.md``: comparison, targets, ablation, command, environment."""
    cfg, env = results["configuration"], results["environment"]
    methods = results["methods"]
    lines = [
        "# Benchmarks",
        "",
        "> Generated by `make bench` (`benchmarks/run_benchmark.py`) from "
        "`benchmarks/results.json`; every figure below comes from that one seeded run.",
        "> **The data are synthetic phantoms** (seeded spine CT with simulated fractures), "
        "not patient scans: the numbers compare methods under identical conditions, they do "
        "not predict clinical performance.",
        "",
        f"Run {results['started']}, wall time {results['wall_s'] / 60:.1f} min"
        + (" — **SMOKE RUN (tiny sizes, numbers meaningless)**" if cfg["smoke"] else "")
        + ".",
        f"Cases: {cfg['cases']['train']} train / {cfg['cases']['val']} val / "
        f"{cfg['cases']['test']} test, phantoms {cfg['phantoms']['shape']} at "
        f"{cfg['phantoms']['spacing_mm']} mm (seed {cfg['phantoms']['seed']}), resampled to "
        f"{cfg['spacing_mm']} mm; training per view: {cfg['slice_size']} px slices, batch "
        f"{cfg['batch_size']}, {cfg['max_epochs']} epochs x {cfg['steps_per_epoch']} steps "
        "(identical for the peer).",
        "",
        "## Comparison (test cases; thresholds chosen on validation cases)",
        "",
        "| method | PR-AUC | 95% CI | F1 | FROC@1 FP | bloat | train slices/s | infer s/volume "
        "| peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ci = results.get("bootstrap", {}).get("pr_auc_ci95", {})
    for name, row in sorted(methods.items(), key=lambda kv: -(kv[1]["pr_auc"] or -1)):
        keys = ("f1", "froc_1", "bloat", "train_slices_per_s", "infer_s_per_volume")
        cells = [row["pr_auc"], _interval(ci.get(name)), *(row[k] for k in keys)]
        cells.append(row["peak_mem_mb"])
        lines.append(f"| {name} | " + " | ".join(_fmt(c) for c in cells) + " |")
    lines += [
        "",
        f"`{PROPOSED}` is the proposed method, `{BASELINE}` the thesis method, `{PEER}` the "
        "off-the-shelf peer (smp.Unet resnet18 + auxiliary class head, no attention gates, "
        "trained identically, product-fused), `ungated_product` the proposed model without "
        "its attention gates (trained identically), `intensity_floor` a no-learning floor "
        "(windowed CT brightness inside bone). 95% CI: case-level bootstrap of the pooled "
        "PR-AUC (test cases drawn with replacement). Speed columns: per model (training: the "
        "training loop's step incl. data loading and augmentation; inference: three views of "
        "one test volume incl. resampling to the scan grid); peak MB is the high-water RSS of "
        "the measuring process (each measurement its own process). Fusion ablations carry no "
        "speed.",
        "",
        *_uncertainty_lines(results),
        *_kind_lines(results),
        "## Targets",
        "",
        "Why a target is missed, and what was tried: the analysis at the end (kept in "
        "[benchmark_analysis.md](benchmark_analysis.md)).",
        "",
        "| target | measured | bound | holds | missed by |",
        "|---|---|---|---|---|",
    ]
    for t in targets(results):
        miss = "" if t["holds"] or t["miss_factor"] is None else f"{t['miss_factor']:.2f}x"
        held = "yes" if t["holds"] else ("**no**" if t["value"] is not None else "n/a")
        lines.append(
            f"| {t['target']} | {_fmt(t['value'])} | {t['op']} {t['bound']} | {held} | {miss} |"
        )
    lines += ["", "## Ablations (PR-AUC)", ""]
    gated, ungated = methods.get(PROPOSED, {}), methods.get("ungated_product", {})
    lines += [
        f"Attention gates: with {_fmt(gated.get('pr_auc'))}, without "
        f"{_fmt(ungated.get('pr_auc'))} (same training; product fusion).",
        "",
    ]
    pr = {name: methods.get(name, {}).get("pr_auc") for name in ABLATIONS}
    lines += [
        "| model \\ fusion | product | mean | fusion gain (product / mean) |",
        "|---|---|---|---|",
        f"| multitask | {_fmt(pr['multitask_product'])} | {_fmt(pr['multitask_mean'])} | "
        f"{_fmt(_ratio(pr['multitask_product'], pr['multitask_mean']))}x |",
        f"| baseline | {_fmt(pr['baseline_product'])} | {_fmt(pr['baseline_mean'])} | "
        f"{_fmt(_ratio(pr['baseline_product'], pr['baseline_mean']))}x |",
        f"| model gain (multitask / baseline) | "
        f"{_fmt(_ratio(pr['multitask_product'], pr['baseline_product']))}x | "
        f"{_fmt(_ratio(pr['multitask_mean'], pr['baseline_mean']))}x | total "
        f"{_fmt(_ratio(pr['multitask_product'], pr['baseline_mean']))}x |",
    ]
    ms, fs = results["metrics_speed"], results["fusion_speed"]
    lines += [
        "",
        "## Infrastructure speed",
        "",
        f"PR-AUC of {ms['voxels']:,} voxels: ours (`metrics.ScoreHistogram` + "
        f"`average_precision`) {_fmt(ms['ours_s'])} s, +{_fmt(ms['ours_mem_mb'])} MB; "
        f"scikit-learn `average_precision_score` {_fmt(ms['sklearn_s'])} s, "
        f"+{_fmt(ms['sklearn_mem_mb'])} MB (each in its own process; |AP difference| "
        f"{_fmt(ms['ap_abs_diff'])}).",
        f"Product fusion of three {fs['shape']} float32 volumes {_fmt(fs['fusion_s'])} s vs "
        f"one numpy copy {_fmt(fs['copy_s'])} s ({_fmt(fs['ratio'])}x).",
        "",
        "## Stage wall times (s)",
        "",
        *[f"- {k}: {v:.1f}" for k, v in results["stage_seconds"].items()],
        "",
        "## Command and environment",
        "",
        "```bash",
        "make bench   # = pip install -e '.[dev,bench]' && python benchmarks/run_benchmark.py",
        "```",
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
        "",
        *_analysis_lines(),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def run(
    smoke: bool,
    results_path: Path,
    docs_path: Path,
    skip_kedro: bool = False,
    project: Path | None = None,
) -> dict:
    """The whole benchmark; returns results (also written to ``results_path``/``docs_path``)."""
    timer = StageTimer()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    if project is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_smoke_")) if smoke else None
        project = prepare_smoke_project(tmp) if tmp else ROOT
    logger.info("project %s", project)
    os.chdir(project)  # catalog paths are relative to the project root
    if not skip_kedro:
        with timer("kedro run --env bench (data, 6 models, inference, fusion, report)"):
            run_kedro(project)
    context = bench_context(project)
    params = plain_params(context)
    extras = ", ".join(params["benchmark"]["extra_models"])
    with timer(f"extra models ({extras}): training, 3 views each"):
        extra_training_summary = train_extra_models(context)
    with timer("scoring every method on the test cases (+ extras' inference, bootstrap)"):
        scored = score_all_methods(context)
    speed = measure_speed(project, params, timer)
    results = {
        "methods": {
            name: _method_row(s, speed["models"].get(SPEED_OF.get(name, "")))
            for name, s in scored["methods"].items()
        },
        "bootstrap": scored["bootstrap"],
        "lesion_kinds": scored["lesion_kinds"],
        "metrics_speed": speed["metrics_speed"],
        "fusion_speed": speed["fusion_speed"],
        "environment": environment(),
        "configuration": configuration(params, context.catalog.load("case_index"), smoke),
        "model_speed_detail": speed["models"],
        "extra_training": extra_training_summary,
        "stage_seconds": timer.seconds,
        "started": started,
        "wall_s": round(time.perf_counter() - t0, 1),
        "command": "make bench" if not smoke else "python benchmarks/run_benchmark.py --smoke",
    }
    results = _json_safe(results)
    write_outputs(results, results_path, docs_path)
    return results


def write_outputs(results: dict, results_path: Path, docs_path: Path) -> None:
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    docs_path.parent.mkdir(parents=True, exist_ok=True)
    docs_path.write_text(markdown(results))
    logger.info("wrote %s and %s", results_path, docs_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes in a temp project copy")
    parser.add_argument("--results", type=Path, help="results.json path")
    parser.add_argument("--docs", type=Path, help="markdown path")
    parser.add_argument("--skip-kedro", action="store_true", help="reuse the last bench run")
    parser.add_argument("--project", type=Path, help="project folder (default: this repo)")
    parser.add_argument("--report-only", type=Path, help="regenerate the docs from results.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args(argv)
    if args.measure:
        logging.disable(logging.WARNING)
        print(RESULT_MARK + json.dumps(_json_safe(measure(json.loads(args.measure)))), flush=True)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        (args.docs or ROOT / "docs" / "benchmarks.md").write_text(markdown(results))
        return 0
    out = Path(tempfile.mkdtemp(prefix="bench_smoke_out_")) if args.smoke else None
    results_path = (args.results or (out or ROOT / "benchmarks") / "results.json").resolve()
    docs_path = args.docs or (out / "benchmarks.md" if out else ROOT / "docs/benchmarks.md")
    results = run(
        args.smoke,
        results_path,
        docs_path.resolve(),
        skip_kedro=args.skip_kedro,
        project=args.project,
    )
    logger.info("done in %.1f min", results["wall_s"] / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
