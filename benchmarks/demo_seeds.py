"""What a new user sees from `make demo`, over several training seeds.

Runs the demo (`kedro run --params seed=<s>`: the default environment, every pipeline, the
phantoms included) once per seed in a throw-away copy of the project, times each run and
records the proposed method's and the thesis baseline's figures from its ``metrics.json``.
Each run's models are also scored (`kedro run --pipeline evaluate`) on a development set:
phantoms of the demo's generator settings drawn with a seed no split uses. The demo's 6
validation cases choose its checkpoints and thresholds, so their figures flatter a recipe,
and its 9 test cases must not choose one; the development set may. Writes
``benchmarks/demo_seeds.json``; nothing else in the checkout changes.

    .venv/bin/python benchmarks/demo_seeds.py            # seeds 1 2 3, ~21 min on 2 cores
    .venv/bin/python benchmarks/demo_seeds.py --seeds 7
    .venv/bin/python benchmarks/demo_seeds.py --params axial.multitask.training.ema_decay=0.98 \
        --out /tmp/probe.json                            # a recipe to probe, `kedro run` syntax

The wall time here is the pipelines' alone; a fresh clone's `make demo` adds its install.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_benchmark import (  # noqa: E402
    bench_context,
    environment,
    plain_params,
    project_copy,
    source_commit,
)

#: Figures kept per method from ``metrics.json`` (FROC: sensitivity at 1 and 2 FP per scan).
FIGURES = ("pr_auc", "recall", "f1")
FROC_KEPT = ("1", "2")
#: Generator seed of the development set (the demo's phantoms use conf/base's ``phantoms.seed``).
DEV_SEED = 4040


def kedro(project: Path, params: str, *pipeline: str) -> subprocess.CompletedProcess:
    """``kedro run --params <params> [--pipeline <name>]`` in ``project``; raises on failure."""
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1")
    cmd = [sys.executable, "-m", "kedro", "run", "--params", params]
    cmd += [arg for name in pipeline for arg in ("--pipeline", name)]
    log = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
    if log.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed:\n{log.stderr[-4000:]}")
    return log


def figures(metrics_json: Path) -> dict:
    """Per method, the kept figures of a ``metrics.json``."""
    metrics = json.loads(metrics_json.read_text())
    return {
        name: {
            **{k: m[k] for k in FIGURES},
            **{f"froc_{rate}": m["froc"].get(rate) for rate in FROC_KEPT},
        }
        for name, m in metrics["methods"].items()
    }


def write_dev_set(project: Path, n_cases: int) -> Path:
    """``n_cases`` phantoms of the demo's generator settings drawn with ``DEV_SEED``, as NIfTI
    in ``project/dev/01_raw``, written by the data_processing pipeline's own node."""
    from vertebral_fracture.datasets import NiftiDataset
    from vertebral_fracture.phantoms import PhantomSetParams
    from vertebral_fracture.pipelines.data_processing.nodes import generate_phantoms

    here = Path.cwd()
    try:
        os.chdir(project)
        settings = plain_params(bench_context(project, env="base"))["phantoms"]
    finally:
        os.chdir(here)
    # test cases: no twins, and none of the cases that only train
    drawn = {"n_cases": n_cases, "seed": DEV_SEED, "intact_twins": False, "training_only": []}
    phantoms, _, _ = generate_phantoms(PhantomSetParams(**{**settings, **drawn}))
    folder = project / "dev" / "01_raw"
    for case, image in phantoms.items():
        NiftiDataset(filepath=str(folder / f"{case}.nii.gz")).save(image)
    return folder


def run_demo(project: Path, seed: int, params: str = "", dev: Path | None = None) -> dict:
    """One demo run from scratch (its data removed first): its time and key figures, and
    with ``dev`` (a folder of scans) its models' figures there."""
    shutil.rmtree(project / "data")
    (project / "data").mkdir()
    run_params = ",".join(filter(None, [f"seed={seed}", params]))
    start = time.perf_counter()
    log = kedro(project, run_params)
    wall = time.perf_counter() - start
    result = {
        "seed": seed,
        "wall_s": round(wall, 1),
        "log_kb": round(len((log.stdout + log.stderr).encode()) / 1024, 1),
        "methods": figures(project / "data" / "08_reporting" / "metrics.json"),
    }
    if dev is not None:
        output = project / "dev" / "output"
        shutil.rmtree(output, ignore_errors=True)
        kedro(project, f"{run_params},raw_dir={dev},output_root={output}", "evaluate")
        result["dev_methods"] = figures(output / "08_reporting" / "metrics.json")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--params", default="", help="more `kedro run --params` (key=value,...): a recipe to probe"
    )
    parser.add_argument(
        "--dev-cases", type=int, default=24, help="phantoms of the development set (0: none)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("demo_seeds.json"))
    args = parser.parse_args(argv)
    source = source_commit()  # what the runs copy now, whatever is edited while they run
    folder = Path(tempfile.mkdtemp(prefix="demo_seeds_"))
    try:
        project = project_copy(folder)
        dev = write_dev_set(project, args.dev_cases) if args.dev_cases else None
        runs = []
        for seed in args.seeds:
            runs.append(run_demo(project, seed, args.params, dev))
            print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        **source,
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            ["python benchmarks/demo_seeds.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "development_set": {"cases": args.dev_cases, "generator_seed": DEV_SEED},
        "environment": environment(),
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
