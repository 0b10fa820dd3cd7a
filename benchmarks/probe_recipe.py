"""A quick probe of a training recipe before a full `make bench`: validation cases only.

Trains the proposed model of each view on the bench's training cases with the bench schedule
plus JSON overrides of its training parameters, one seed, and prints the voxel PR-AUC of each
view and of their product (pooled as the fusion pipeline does) on the bench's validation
cases (canonical grid). Needs the bench's data: `kedro run --env bench --pipelines
data_processing` first. Single seeds swing by about 0.1 on 8 validation cases: a probe
points, the bench (3 seeds, 30 test cases) decides.

    .venv/bin/python benchmarks/probe_recipe.py '{}' --seed 1
    .venv/bin/python benchmarks/probe_recipe.py '{"steps_per_epoch": 150}' --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_benchmark import ROOT, bench_context  # noqa: E402


def probe(overrides: dict, seed: int, views: list[str]) -> dict:
    """Validation voxel PR-AUC per view and of the product fusion for one recipe and seed."""
    import numpy as np

    from vertebral_fracture.fusion import fuse, pool_log_evidence
    from vertebral_fracture.inference import predict_volume
    from vertebral_fracture.metrics import ScoreHistogram, average_precision
    from vertebral_fracture.pipelines.training.nodes import load_split
    from vertebral_fracture.slicing import assemble_volume
    from vertebral_fracture.training import TrainingParams, train

    os.chdir(ROOT)
    context = bench_context(ROOT)
    index = context.catalog.load("case_index")
    volumes: dict[str, list[np.ndarray]] = {}
    truth: dict[str, np.ndarray] = {}
    result: dict = {"overrides": overrides, "seed": seed}
    for view in views:
        training = dict(context.params[view]["multitask"]["training"])
        params = TrainingParams.model_validate({**training, **overrides, "seed": seed})
        slices = context.catalog.load(f"{view}.slices")
        val = load_split(slices, index, "val")
        start = time.perf_counter()
        model = train(load_split(slices, index, "train"), val, params, progress=False).model
        histogram = ScoreHistogram()
        for stack in val:
            volume = predict_volume(
                model,
                stack,
                params.slice_size,
                context_stride=params.context_stride,
                progress=False,
            )
            truth[stack.case_id] = assemble_volume(stack.masks.astype(np.float32), stack) > 0.5
            volumes.setdefault(stack.case_id, []).append(volume)
            histogram.update(volume.ravel(), truth[stack.case_id].ravel())
        result[view] = average_precision(histogram)
        result[f"{view}_train_s"] = round(time.perf_counter() - start, 1)
        print(view, round(result[view], 3), flush=True)
    if len(views) > 1:  # the proposed fusion, as the fusion pipeline computes it
        sigma_mm = context.params["fusion"]["log_smoothing_mm"]
        spacing = context.params["data_processing"]["spacing_mm"]
        histogram = ScoreHistogram()
        for case_id, case_volumes in volumes.items():
            product = pool_log_evidence(fuse(case_volumes, "product"), "product", sigma_mm, spacing)
            histogram.update(product.ravel(), truth[case_id].ravel())
        result["product"] = average_precision(histogram)
        print("product", round(result["product"], 3), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", type=json.loads, help="training parameters, JSON")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--views", nargs="+", default=["axial", "coronal", "sagittal"])
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.overrides, args.seed, args.views)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
