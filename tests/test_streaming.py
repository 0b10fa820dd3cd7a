"""Memory stays flat as the number of cases grows: inference and fusion stream case by case."""

from __future__ import annotations

import tracemalloc

import nibabel as nib
import numpy as np
import torch

from tests.conftest import centre_spine
from vertebral_fracture.models import build_model
from vertebral_fracture.pipelines.fusion.nodes import FusionParams, fuse_views
from vertebral_fracture.pipelines.inference.nodes import InferenceParams, predict_view
from vertebral_fracture.slicing import extract_slices
from vertebral_fracture.training import TrainingParams

SHAPE = (24, 24, 48)  # per-case volumes large enough to dwarf bookkeeping
DEMO_CASES = 16


def _peak_bytes(outputs: dict) -> int:
    """Peak traced memory while saving lazy outputs one by one, as PartitionedDataset does."""
    tracemalloc.start()
    for load in outputs.values():
        load()  # the saved volume is dropped right away
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def _inference_outputs(n_cases: int) -> dict:
    rng = np.random.default_rng(0)
    stacks = {
        f"c{i}": extract_slices(
            f"c{i}",
            rng.random(SHAPE, dtype=np.float32),
            None,
            "axial",
            32,
            np.eye(4),
            spine=centre_spine(SHAPE),
        )
        for i in range(n_cases)
    }
    torch.manual_seed(0)
    checkpoint = {
        "params": TrainingParams(architecture="baseline", slice_size=32).model_dump(mode="json"),
        "model_state_dict": build_model("baseline").state_dict(),  # cheapest model, same path
    }
    records = [
        {"case_id": c, "split": "test", "shape": list(SHAPE), "affine": np.eye(4).tolist()}
        for c in stacks
    ]
    return predict_view(
        {c: (lambda s=s: s) for c, s in stacks.items()},
        checkpoint,
        records,
        TrainingParams(architecture="baseline", slice_size=32),
        InferenceParams(device="cpu", batch_size=24),
        view="axial",
    )


def test_inference_memory_does_not_grow_with_case_count():
    few = _peak_bytes(_inference_outputs(2))
    many = _peak_bytes(_inference_outputs(10 * DEMO_CASES))
    assert many < 1.3 * few, (few, many)


def _fusion_outputs(n_cases: int) -> dict:
    def view() -> dict:
        return {
            f"c{i}": (lambda: nib.Nifti1Image(np.full((64, 64, 64), 0.5, np.float32), np.eye(4)))
            for i in range(n_cases)
        }

    params = FusionParams(methods={"multitask": ["product", "mean"]})
    return fuse_views(view(), view(), view(), params, variant="multitask")


def test_fusion_memory_does_not_grow_with_case_count():
    few = _peak_bytes(_fusion_outputs(2))
    many = _peak_bytes(_fusion_outputs(10 * DEMO_CASES))
    assert many < 1.3 * few, (few, many)
