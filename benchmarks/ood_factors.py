"""Which held-out range costs the most out of domain: the bench's trained models on phantom
sets that each hold out one factor of ``benchmark.out_of_domain.appearance``.

Every set has the out-of-domain geometry (shape, spacing, orientations, seed) and the
training appearance (``phantoms.appearance``) except for the named factor, which takes its
held-out range; ``none`` holds out nothing but the geometry, ``training_grid`` not even that
(the training phantoms' shape and spacing, the out-of-domain orientations), and ``all`` is the
bench's own out-of-domain set, a test set that may not choose a recipe: ``--seed`` draws every
set anew (the same ranges, other phantoms), a development set that may (``--sets all --seed
9191`` is the bench's ``benchmark.development`` set). Each set is scored by
the ``evaluate`` pipeline with the models and validation thresholds already in ``data/bench``
(run `make bench` first). Writes ``benchmarks/ood_factors.json`` (commit, seed, sets, metrics
per method) and prints a table.

    .venv/bin/python benchmarks/ood_factors.py --cases 8 --variants multitask
    .venv/bin/python benchmarks/ood_factors.py --cases 16 --sets all --seed 9191 --out dev.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_benchmark import ROOT, bench_context, plain_params, run_kedro, source_commit  # noqa: E402


def figures(metrics: dict) -> dict:
    """PR-AUC, recall at the validation threshold and FROC sensitivity at 1 and 2 FP/scan."""
    froc = metrics.get("froc") or {}
    return {
        "pr_auc": metrics.get("pr_auc"),
        "recall": metrics.get("recall"),
        "froc_1": froc.get("1"),
        "froc_2": froc.get("2"),
        "vertebra_auc": metrics.get("vertebra_auc"),
    }


def _figure(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def factor_sets(params: dict, n_cases: int, seed: int | None = None) -> dict[str, dict]:
    """Phantom set parameters per held-out factor: ``training_grid``, ``none``, each
    appearance key, ``all``; drawn with ``seed`` (None: the out-of-domain test set's)."""
    ood = dict(params["benchmark"]["out_of_domain"])
    if seed is not None:
        ood["seed"] = seed
    held_out = ood.pop("appearance")
    trained = params["phantoms"].get("appearance") or {}
    grid = {key: params["phantoms"][key] for key in ("shape", "spacing_mm")}
    sets = {"training_grid": (grid, {}), "none": ({}, {})}
    sets |= {key: ({}, {key: value}) for key, value in held_out.items()}
    sets["all"] = ({}, held_out)
    return {
        name: {**ood, **geometry, "n_cases": n_cases, "appearance": {**trained, **appearance}}
        for name, (geometry, appearance) in sets.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="phantoms per set")
    parser.add_argument("--variants", nargs="+", default=["multitask"])
    parser.add_argument("--sets", nargs="+", help="only these sets (default: every one)")
    parser.add_argument(
        "--seed",
        type=int,
        help="generator seed (default: the out-of-domain test set's, which may not choose a "
        "recipe; another seed gives a development set that may)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ood_factors.json")
    args = parser.parse_args(argv)

    from vertebral_fracture.datasets import NiftiDataset
    from vertebral_fracture.phantoms import PhantomSetParams
    from vertebral_fracture.pipelines.data_processing.nodes import generate_phantoms

    os.chdir(ROOT)
    context = bench_context(ROOT)
    params = plain_params(context)
    root = ROOT / context.config_loader["globals"]["data_root"] / "ood_factors"
    results: dict = {**source_commit(), "cases": args.cases, "variants": args.variants}
    results |= {"seed": args.seed, "sets": {}}
    for name, spec in factor_sets(params, args.cases, args.seed).items():
        if args.sets and name not in args.sets:
            continue
        scans = root / name
        phantoms, _, _ = generate_phantoms(PhantomSetParams(**spec))
        shutil.rmtree(scans / "01_raw", ignore_errors=True)  # generated here: no stale cases
        for case, image in phantoms.items():
            NiftiDataset(filepath=str(scans / "01_raw" / f"{case}.nii.gz")).save(image)
        start = time.perf_counter()
        run_params = {"raw_dir": str(scans / "01_raw"), "output_root": str(scans)}
        run_kedro(ROOT, ["evaluate"], {**run_params, "variants": args.variants})
        methods = json.loads((scans / "08_reporting" / "metrics.json").read_text())["methods"]
        results["sets"][name] = {
            "appearance": spec["appearance"],
            "evaluate_s": round(time.perf_counter() - start, 1),
            # methods of variants not run here are listed without figures: left out
            "methods": {m: figures(v) for m, v in methods.items() if v.get("pr_auc") is not None},
        }
        print(name, json.dumps(results["sets"][name]["methods"]), flush=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")  # a stopped run keeps its sets
    methods = sorted({m for s in results["sets"].values() for m in s["methods"]})
    print("held out | " + " | ".join(f"{m} PR-AUC / FROC@2" for m in methods))
    for name, entry in results["sets"].items():
        cells = [entry["methods"].get(m, {}) for m in methods]
        row = [f"{_figure(c.get('pr_auc'), 3)} / {_figure(c.get('froc_2'), 2)}" for c in cells]
        print(f"{name} | " + " | ".join(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
