"""What a new user sees from `make demo`, over several training seeds.

Runs the demo (`kedro run --params seed=<s>`: the default environment, every pipeline, the
phantoms included) once per seed in a throw-away copy of the project, times each run and
records the proposed method's and the thesis baseline's figures from its ``metrics.json``.
Writes ``benchmarks/demo_seeds.json``; nothing else in the checkout changes.

    .venv/bin/python benchmarks/demo_seeds.py            # seeds 1 2 3, ~18 min on 2 cores
    .venv/bin/python benchmarks/demo_seeds.py --seeds 7

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
from run_benchmark import environment, project_copy, source_commit  # noqa: E402

#: Figures kept per method from ``metrics.json`` (FROC: sensitivity at 1 and 2 FP per scan).
FIGURES = ("pr_auc", "recall", "f1")
FROC_KEPT = ("1", "2")


def run_demo(project: Path, seed: int) -> dict:
    """One demo run from scratch (its data removed first); its time and key figures."""
    shutil.rmtree(project / "data")
    (project / "data").mkdir()
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1")
    cmd = [sys.executable, "-m", "kedro", "run", "--params", f"seed={seed}"]
    start = time.perf_counter()
    log = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if log.returncode != 0:
        raise RuntimeError(f"demo with seed {seed} failed:\n{log.stderr[-4000:]}")
    metrics = json.loads((project / "data" / "08_reporting" / "metrics.json").read_text())
    methods = {
        name: {
            **{k: m[k] for k in FIGURES},
            **{f"froc_{rate}": m["froc"].get(rate) for rate in FROC_KEPT},
        }
        for name, m in metrics["methods"].items()
    }
    return {
        "seed": seed,
        "wall_s": round(wall, 1),
        "log_kb": round(len((log.stdout + log.stderr).encode()) / 1024, 1),
        "methods": methods,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("demo_seeds.json"))
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="demo_seeds_"))
    try:
        project = project_copy(folder)
        runs = []
        for seed in args.seeds:
            runs.append(run_demo(project, seed))
            print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        **source_commit(),
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/demo_seeds.py --seeds " + " ".join(map(str, args.seeds)),
        "environment": environment(),
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
