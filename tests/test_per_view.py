"""Tests for benchmarks/per_view.py: which view carries a detection and which vetoes it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "per_view.py"


@pytest.fixture(scope="module")
def per_view():
    spec = importlib.util.spec_from_file_location("per_view", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
