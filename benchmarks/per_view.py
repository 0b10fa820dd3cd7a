"""Which view carries a detection and which vetoes it: voxel PR-AUC of each view's probability
volume beside the fused ones, and per view the median over fractured scans of the highest
probability inside the fracture mask. With ``--view-weights``, also the PR-AUC of weighted
products ``prod_v P_v ** w_v`` over a grid of weights (would trusting one view less help?).

Reads what a run left in the catalog (``{view}.{variant}.probabilities``, ``{variant}.fused``
and the masks of ``raw_scans``), e.g. after ``evaluate`` on a folder of labelled scans:

    .venv/bin/python benchmarks/per_view.py --env bench \
        --raw-dir data/bench/ood_factors/levels/01_raw --output-root data/bench/ood_factors/levels
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Exponents tried per view by ``--view-weights``; the largest is always 1 (only ratios rank).
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0)


def weight_grid(n_views: int) -> list[tuple[float, ...]]:
    """Every combination of ``WEIGHT_GRID`` per view whose largest exponent is 1."""
    return [w for w in itertools.product(WEIGHT_GRID, repeat=n_views) if max(w) == 1.0]


def per_view_figures(
    probabilities: dict[str, dict],
    fused: dict[str, dict],
    masks: dict,
    view_weights: Sequence[tuple[float, ...]] = (),
) -> dict[str, dict]:
    """PR-AUC per view and per fused method, in-mask maxima per view.

    Args:
        probabilities: view -> {case: loader of the view's probability image}.
        fused: method -> {case: loader of its fused image}.
        masks: case -> loader of the case's fracture mask image (same grid).
        view_weights: exponents, one per view in ``probabilities``' order, of weighted
            products to score (under ``"weighted_product"``, keyed "w1/w2/w3").
    """
    from vertebral_fracture.metrics import ScoreHistogram, average_precision

    volumes = {**probabilities, **fused}
    histograms = {name: ScoreHistogram() for name in volumes}
    weighted = {weights: ScoreHistogram() for weights in view_weights}
    in_mask: dict[str, list[float]] = {view: [] for view in probabilities}
    for case, mask_loader in sorted(masks.items()):
        if any(case not in by_case for by_case in volumes.values()):
            continue
        truth = np.asarray(mask_loader().dataobj) > 0
        logs = []  # of each view's probabilities, for the weighted products
        for name, by_case in volumes.items():
            prob = np.asarray(by_case[case]().dataobj, dtype=np.float32)
            histograms[name].update(prob.ravel(), truth.ravel())
            if name in in_mask:
                if truth.any():
                    in_mask[name].append(float(prob[truth].max()))
                if weighted:
                    logs.append(np.log(np.maximum(prob, 1e-30)))
        if weighted:
            for weights, histogram in weighted.items():
                score = np.exp(sum(w * log for w, log in zip(weights, logs, strict=True)))
                histogram.update(np.minimum(score, 1.0).ravel(), truth.ravel())
    figures = {
        "pr_auc": {name: average_precision(h) for name, h in histograms.items()},
        "in_mask_max_median": {v: float(np.median(x)) for v, x in in_mask.items() if x},
    }
    if weighted:
        figures["weighted_product"] = {
            "/".join(f"{w:g}" for w in weights): average_precision(h)
            for weights, h in weighted.items()
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--raw-dir", required=True, type=Path)
    parser.add_argument("--output-root", required=True, type=Path)
    parser.add_argument("--variant", default="multitask")
    parser.add_argument(
        "--view-weights", action="store_true", help="also score weighted products (WEIGHT_GRID)"
    )
    args = parser.parse_args(argv)

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from vertebral_fracture.cases import find_cases

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    bootstrap_project(ROOT)
    runtime = {
        "raw_dir": str(args.raw_dir.resolve()),
        "output_root": str(args.output_root.resolve()),
    }
    with KedroSession.create(project_path=ROOT, env=args.env, runtime_params=runtime) as session:
        context = session.load_context()
        catalog = context.catalog
        views = context.params["fusion"].views
        probabilities = {v: catalog.load(f"{v}.{args.variant}.probabilities") for v in views}
        fused_parts = catalog.load(f"{args.variant}.fused")
        scans = catalog.load("raw_scans")
    fused: dict[str, dict] = {}
    for key, loader in fused_parts.items():
        method, case = key.split("/", 1)
        fused.setdefault(method, {})[case] = loader
    masks = {c.case_id: scans[c.mask] for c in find_cases(list(scans), str(args.raw_dir)) if c.mask}
    weights = weight_grid(len(views)) if args.view_weights else ()
    print(json.dumps(per_view_figures(probabilities, fused, masks, weights), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
