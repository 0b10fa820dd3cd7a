"""Nodes of the inference pipeline."""

from __future__ import annotations

import functools
from collections.abc import Callable

import nibabel as nib
from pydantic import BaseModel, ConfigDict, Field

from vertebral_fracture.inference import predict_on_scan_grid
from vertebral_fracture.slicing import SliceStack
from vertebral_fracture.training import (
    IncompatibleCheckpointError,
    TrainingParams,
    load_model_from_checkpoint,
    resolve_device,
)
from vertebral_fracture.training.augmentation import left_right_axis


class InferenceParams(BaseModel):
    """Which cases get probability volumes, and how inference runs."""

    model_config = ConfigDict(extra="forbid")
    splits: list[str] = Field(default_factory=lambda: ["val", "test"])
    batch_size: int = Field(16, ge=1)
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$")
    left_right_mirror: bool = False  # also predict each window mirrored left-right, average


def predict_view(
    slices: dict[str, Callable[[], SliceStack]],
    model: dict,
    case_index: list[dict],
    training: TrainingParams,
    params: InferenceParams,
    *,
    view: str,
) -> dict[str, Callable[[], nib.Nifti1Image]]:
    """Per-case probability volumes of one view and model, on each input scan's own grid.

    The checkpoint must come from this view and match the configured architecture
    (``training``); the model runs on the stacks' ``training.slice_size`` spine windows;
    saved lazily case by case (one volume in memory at a time) as float32
    NIfTI with the input scan's affine, so it overlays the scan in 3D Slicer or ITK-SNAP.
    """
    if model.get("view", view) != view:
        raise IncompatibleCheckpointError(
            f"the {view} model checkpoint was trained on the {model['view']} view; "
            f"retrain with `kedro run --pipeline training --namespaces {view}`."
        )
    # slice_size included: the model sees windows of the size it was trained on
    network = load_model_from_checkpoint(model, expected=training.architecture_dict())
    device = resolve_device(params.device)

    def probability(record: dict) -> nib.Nifti1Image:
        return predict_on_scan_grid(
            network,
            slices[record["case_id"]](),
            record,
            training.slice_size,
            context_stride=training.context_stride,
            mirror_axis=left_right_axis(view) if params.left_right_mirror else None,
            batch_size=params.batch_size,
            device=device,
        )

    wanted = [r for r in case_index if r["split"] in params.splits]
    return {r["case_id"]: functools.partial(probability, r) for r in wanted}
