"""Tests for benchmarks/ood_factors.py: which held-out range costs the most out of domain."""

from __future__ import annotations

import pytest

from tests.conftest import benchmark_script

PARAMS = {
    "phantoms": {
        "shape": [96, 96, 96],
        "spacing_mm": [1.25, 1.25, 1.25],
        "appearance": {"levels": ["T9", "L5"], "noise_hu": [5.0, 30.0]},
    },
    "benchmark": {
        "out_of_domain": {
            "n_cases": 16,
            "shape": [176, 176, 40],
            "spacing_mm": [0.8, 0.8, 3.5],
            "seed": 9090,
            "appearance": {"levels": ["T5", "T8"], "noise_hu": [30.0, 45.0]},
        }
    },
}


@pytest.fixture(scope="module")
def ood_factors():
    return benchmark_script("ood_factors")


def test_each_set_holds_out_one_factor_and_all_is_the_test_set(ood_factors):
    sets = ood_factors.factor_sets(PARAMS, n_cases=4)
    assert list(sets) == ["training_grid", "none", "levels", "noise_hu", "all"]
    assert sets["levels"]["appearance"] == {"levels": ["T5", "T8"], "noise_hu": [5.0, 30.0]}
    assert sets["none"]["appearance"] == PARAMS["phantoms"]["appearance"]
    assert sets["training_grid"]["shape"] == [96, 96, 96]
    held_out = PARAMS["benchmark"]["out_of_domain"]
    assert sets["all"] == {**held_out, "n_cases": 4}
    assert {s["seed"] for s in sets.values()} == {9090}


def test_another_seed_draws_a_development_set_of_the_same_ranges(ood_factors):
    test_sets = ood_factors.factor_sets(PARAMS, n_cases=4)
    dev_sets = ood_factors.factor_sets(PARAMS, n_cases=4, seed=9191)
    for name, dev in dev_sets.items():
        assert dev["seed"] == 9191
        assert {**dev, "seed": 9090} == test_sets[name]
    assert PARAMS["benchmark"]["out_of_domain"]["seed"] == 9090  # the config is left alone
