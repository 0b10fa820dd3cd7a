"""Which view carries a detection and which vetoes it: voxel PR-AUC of each view's probability
volume beside the fused ones, and per view the median over fractured scans of the highest
probability inside the fracture mask.

Reads what a run left in the catalog (``{view}.{variant}.probabilities``, ``{variant}.fused``
and the masks of ``raw_scans``), e.g. after ``evaluate`` on a folder of labelled scans:

    .venv/bin/python benchmarks/per_view.py --env bench \
        --raw-dir data/bench/ood_factors/levels/01_raw --output-root data/bench/ood_factors/levels
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def per_view_figures(
    probabilities: dict[str, dict], fused: dict[str, dict], masks: dict
) -> dict[str, dict]:
    """PR-AUC per view and per fused method, in-mask maxima per view.

    Args:
        probabilities: view -> {case: loader of the view's probability image}.
        fused: method -> {case: loader of its fused image}.
        masks: case -> loader of the case's fracture mask image (same grid).
    """
    from vertebral_fracture.metrics import ScoreHistogram, average_precision

    volumes = {**probabilities, **fused}
    histograms = {name: ScoreHistogram() for name in volumes}
    in_mask: dict[str, list[float]] = {view: [] for view in probabilities}
    for case, mask_loader in sorted(masks.items()):
        if any(case not in by_case for by_case in volumes.values()):
            continue
        truth = np.asarray(mask_loader().dataobj) > 0
        for name, by_case in volumes.items():
            prob = np.asarray(by_case[case]().dataobj, dtype=np.float32)
            histograms[name].update(prob.ravel(), truth.ravel())
            if name in in_mask and truth.any():
                in_mask[name].append(float(prob[truth].max()))
    return {
        "pr_auc": {name: average_precision(h) for name, h in histograms.items()},
        "in_mask_max_median": {v: float(np.median(x)) for v, x in in_mask.items() if x},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--raw-dir", required=True, type=Path)
    parser.add_argument("--output-root", required=True, type=Path)
    parser.add_argument("--variant", default="multitask")
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
    print(json.dumps(per_view_figures(probabilities, fused, masks), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
