"""Two ``make bench`` results side by side: a control and a probe of one change, paired by
training seed (the same phantoms, splits and test sets, so seed s of one pairs with seed s of
the other).

Prints, per test set and figure of the proposed method, both runs' per-seed values and the
mean paired difference (probe - control) with its 95 % t-interval over seeds; an ordering is
claimed only where that interval excludes zero ("a tie" otherwise).

    .venv/bin/python benchmarks/compare_runs.py benchmarks/results.json /tmp/probe/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

METHOD = "multitask_product"  # the proposed model with product fusion
FIGURES = ("pr_auc", "froc_1", "froc_2", "vertebra_auc")
TEST_SETS = {  # printed name: results.json key (None: the top level)
    "in-domain": None,
    "out-of-domain": "out_of_domain",
    "real bone": "real_bone",
    "development": "development",  # the set that may choose
}


def paired_difference(control: list[float], probe: list[float]) -> dict:
    """Mean of ``probe - control`` per seed and its 95 % t-interval (None with one seed)."""
    if len(control) != len(probe):
        raise ValueError(f"seed counts differ: {len(control)} vs {len(probe)}")
    diff = np.asarray(probe, float) - np.asarray(control, float)
    mean = float(diff.mean())
    if len(diff) < 2:
        return {"mean": mean, "ci95": None, "verdict": "one seed"}
    half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
    low, high = mean - half, mean + half
    verdict = "higher" if low > 0 else "lower" if high < 0 else "a tie"
    return {"mean": mean, "ci95": [low, high], "verdict": verdict}


def compare(control: dict, probe: dict, method: str = METHOD) -> list[dict]:
    """One row per test set and figure present in both runs."""
    if control["seeds"] != probe["seeds"]:
        raise ValueError(f"runs trained other seeds: {control['seeds']} vs {probe['seeds']}")
    rows = []
    for name, key in TEST_SETS.items():
        if key and not (key in control and key in probe):
            continue  # a set one of the runs did not score
        sections = [run[key] if key else run for run in (control, probe)]
        if sections[0].get("test_cases") != sections[1].get("test_cases"):
            raise ValueError(f"{name}: the runs scored other test cases, so seeds do not pair")
        sides = [section.get("methods", {}).get(method) for section in sections]
        if None in sides:
            continue
        for figure in FIGURES:
            values = [side.get(figure, {}).get("per_seed") for side in sides]
            if None in values:
                continue
            rows.append(
                {
                    "test_set": name,
                    "figure": figure,
                    "control": values[0],
                    "probe": values[1],
                    **paired_difference(*values),
                }
            )
    return rows


def _seeds(values: list[float]) -> str:
    return " / ".join(f"{v:.3f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("control", type=Path, help="results.json of the control run")
    parser.add_argument("probe", type=Path, help="results.json of the probe run")
    parser.add_argument("--method", default=METHOD)
    args = parser.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in (args.control, args.probe)]
    print(f"control {runs[0]['commit'][:7]}, probe {runs[1]['commit'][:7]}, {args.method}")
    print("| test set | figure | control | probe | difference (95 % t-interval) |")
    print("|---|---|---|---|---|")
    for row in compare(*runs, method=args.method):
        interval = (
            row["ci95"] and f" ({row['ci95'][0]:+.3f} to {row['ci95'][1]:+.3f}) {row['verdict']}"
        )
        print(
            f"| {row['test_set']} | {row['figure']} | {_seeds(row['control'])} | "
            f"{_seeds(row['probe'])} | {row['mean']:+.3f}{interval or ''} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
