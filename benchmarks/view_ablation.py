"""Quick single-view ablation: train one view's multitask model with parameter overrides.

Trains ``<view>.multitask.training`` of a Kedro environment (default ``bench``, whose slices
must exist: run ``kedro run --env bench --pipeline data_processing`` first) once per variant,
then scores every validation pixel of every validation case with P_class x P_seg (pooled
pixel PR-AUC, the per-view quantity the fused volume is built from) and counts the validation
lesions the view scores >= 0.5 somewhere (product fusion needs every view to see a lesion).
Minutes per variant,
where the full benchmark takes most of an hour; use it to choose what the benchmark runs.

    python benchmarks/view_ablation.py --view sagittal \\
        --variant gates='{}' --variant ungated='{"attention_gates": false}'

Results (one JSON object per variant, with the training history) go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from scipy import ndimage

from vertebral_fracture.inference import predict_slices
from vertebral_fracture.metrics import LESION_CONNECTIVITY, ScoreHistogram, average_precision
from vertebral_fracture.pipelines.training.nodes import load_split
from vertebral_fracture.training import TrainingParams, train

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("view_ablation")


def parse_variant(text: str) -> tuple[str, dict]:
    """``name={"key": value}`` -> ``(name, overrides)``."""
    name, _, overrides = text.partition("=")
    if not name or not overrides:
        raise argparse.ArgumentTypeError(f"expected name='{{json overrides}}', got {text!r}")
    return name, json.loads(overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--view", default="sagittal", choices=("axial", "coronal", "sagittal"))
    parser.add_argument("--env", default="bench")
    parser.add_argument("--variant", type=parse_variant, action="append", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/view_ablation.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env=args.env) as session:
        context = session.load_context()
        base = dict(context.params[args.view]["multitask"]["training"])
        case_index = context.catalog.load("case_index")
        slices = context.catalog.load(f"{args.view}.slices")
    results = []
    for name, overrides in args.variant:
        params = TrainingParams.model_validate({**base, **overrides})
        started = time.perf_counter()
        result = train(
            load_split(slices, case_index, "train", params.slice_size),
            load_split(slices, case_index, "val", params.slice_size),
            params,
            progress=False,
        )
        seconds = time.perf_counter() - started
        histogram, lesion_max = ScoreHistogram(), []
        for record in (r for r in case_index if r["split"] == "val" and r["mask"]):
            stack = slices[record["case_id"]]()
            prob = predict_slices(
                result.model, stack, in_channels=params.in_channels, progress=False
            )
            histogram.update(prob, stack.masks > 0)
            lesions, n = ndimage.label(stack.masks > 0, structure=LESION_CONNECTIVITY)
            if n:
                lesion_max.extend(ndimage.maximum(prob, lesions, np.arange(1, n + 1)).tolist())
        results.append(
            {
                "variant": name,
                "overrides": overrides,
                "view": args.view,
                "val_pixel_pr_auc": average_precision(histogram),
                # share of validation lesions (3D components) this view scores >= 0.5 somewhere
                "val_lesions_seen": float(np.mean(np.asarray(lesion_max) >= 0.5)),
                "val_lesions": len(lesion_max),
                "best_val_dice": float(result.history["val_dice"].max()),
                "train_seconds": round(seconds, 1),
                "history": result.history.to_dict(orient="list"),
            }
        )
        logger.info(
            "%s: val pixel PR-AUC %.3f, lesions seen %.2f",
            name,
            results[-1]["val_pixel_pr_auc"],
            results[-1]["val_lesions_seen"],
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
