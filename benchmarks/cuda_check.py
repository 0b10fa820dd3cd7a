"""The CUDA path end to end, timed: phantoms, a short training of the proposed model, then
``evaluate`` on one large scan, all through the pipelines on the GPU (mixed precision and
channels-last, as ``training.device: auto`` picks them on CUDA).

    python benchmarks/cuda_check.py                  # on a machine with CUDA
    python benchmarks/cuda_check.py --device cpu --small   # the same path on CPU, tiny sizes

Writes ``benchmarks/cuda_check.json`` (``--out``): device, seconds per training step and
slices per second, the evaluate time of the large scan, peak GPU memory. Exits with 2 when
CUDA is asked for and absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_benchmark import (  # noqa: E402
    ROOT,
    environment,
    measure_large_scan,
    prepare_project,
    run_kedro,
    run_measurement,
    source_commit,
)

#: Full check: bench-sized training windows, a 512 x 512 x 300 scan at 0.7 x 0.7 x 1 mm.
FULL = {
    "phantoms": {"n_cases": 12},
    "training": {"max_epochs": 1, "steps_per_epoch": 20},
    "large_scan": {"shape": [512, 512, 300], "spacing_mm": [0.7, 0.7, 1.0], "seed": 5150},
    "steps": 20,
}
#: ``--small``: the same path in a minute or two on CPU.
SMALL = {
    "phantoms": {"n_cases": 8, "shape": [40, 40, 40], "spacing_mm": [1.6, 1.6, 1.6]},
    "data_processing": {"min_slice_size": 32},
    "training": {"slice_size": 32, "batch_size": 4, "max_epochs": 1, "steps_per_epoch": 2},
    "large_scan": {"shape": [72, 72, 48], "spacing_mm": [1.0, 1.0, 1.5], "seed": 5150},
    "steps": 2,
}


def check(device: str, sizes: dict, folder: Path) -> dict:
    """Train the proposed variant's three views on ``device`` and time a step and a large scan."""
    overrides = {
        "variants": ["multitask"],
        "phantoms": sizes["phantoms"],
        "data_processing": sizes.get("data_processing", {}),
        "inference": {"device": device},
        "training": {**sizes["training"], "device": device},
    }
    project = prepare_project(folder, overrides)
    run_kedro(project, ["data_processing", "training", "inference", "fusion"])
    step = run_measurement(
        {"kind": "train_speed", "variant": "multitask", "steps": sizes["steps"]}, project
    )
    large = measure_large_scan(project, sizes["large_scan"])
    return {"environment": environment(), "device": device, "training": step, "large_scan": large}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--small", action="store_true", help="tiny sizes (a flow check)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "cuda_check.json")
    parser.add_argument(
        "--commit", help="the commit measured, where the checkout has no git history (a copy)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("cuda_check: no CUDA device here; nothing measured.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cuda_check_") as folder:
        results = check(args.device, SMALL if args.small else FULL, Path(folder))
    results = {"commit": args.commit or source_commit()["commit"], **results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
