"""Tests for benchmarks/per_view.py: which view carries a detection and which vetoes it."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import benchmark_script


@pytest.fixture(scope="module")
def per_view():
    return benchmark_script("per_view")


def _loader(array: np.ndarray):
    image = nib.Nifti1Image(array.astype(np.float32), np.eye(4))
    return lambda: image


def test_a_blind_view_scores_low_and_its_veto_shows_in_the_product(per_view):
    rng = np.random.default_rng(0)
    masks, seeing, blind = {}, {}, {}
    for case in ("a", "b"):
        truth = np.zeros((8, 8, 8), np.float32)
        truth[2:4, 2:5, 3] = 1
        masks[case] = _loader(truth)
        seeing[case] = _loader(0.5 * truth + 0.4 * rng.random(truth.shape))
        blind[case] = _loader(0.01 * truth + 0.4 * rng.random(truth.shape))
    product = {c: _loader(np.asarray(seeing[c]().dataobj) * blind[c]().dataobj) for c in masks}
    figures = per_view.per_view_figures(
        {"coronal": seeing, "axial": blind}, {"multitask_product": product}, masks
    )
    assert figures["pr_auc"]["coronal"] == pytest.approx(1.0)
    assert figures["pr_auc"]["axial"] < 0.5
    assert figures["pr_auc"]["multitask_product"] < figures["pr_auc"]["coronal"]
    assert figures["in_mask_max_median"]["coronal"] > 0.5 > figures["in_mask_max_median"]["axial"]


def test_weighted_products_span_the_single_views_and_the_plain_product(per_view):
    rng = np.random.default_rng(1)
    masks, views = {}, {"axial": {}, "coronal": {}}
    for case in ("a", "b"):
        truth = np.zeros((8, 8, 8), np.float32)
        truth[2:5, 2:5, 3:5] = 1
        masks[case] = _loader(truth)
        for view, signal in (("axial", 0.05), ("coronal", 0.3)):
            views[view][case] = _loader(signal * truth + 0.5 * rng.random(truth.shape))
    grid = per_view.weight_grid(2)
    assert (1.0, 1.0) in grid and (0.0, 1.0) in grid and (0.0, 0.5) not in grid
    figures = per_view.per_view_figures(views, {}, masks, grid)
    weighted = figures["weighted_product"]
    assert weighted["1/0"] == pytest.approx(figures["pr_auc"]["axial"])
    assert weighted["0/1"] == pytest.approx(figures["pr_auc"]["coronal"])
    assert weighted["0.25/1"] > weighted["1/1"]  # trusting the weak view less helps here
