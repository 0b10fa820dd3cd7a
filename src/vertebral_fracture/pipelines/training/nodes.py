"""Nodes of the training pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from vertebral_fracture.datasets import TorchCheckpointDataset
from vertebral_fracture.slicing import SliceStack
from vertebral_fracture.training import TrainingParams, train, training_curves_figure
from vertebral_fracture.training.distributed import train_in_processes

logger = logging.getLogger(__name__)


def load_split(
    slices: dict[str, Callable[[], SliceStack]], case_index: list[dict], split: str
) -> list[SliceStack]:
    """The labelled stacks of one split (training cuts their spine windows)."""
    cases = [r["case_id"] for r in case_index if r["split"] == split and r["mask"]]
    return [slices[case_id]() for case_id in cases]


def output_folder(path: str) -> Path:
    """A folder to write into: relative paths must stay inside the project's ``data/``.

    An absolute path is the user's explicit choice of output folder and is used as given.
    """
    folder = Path(path)
    if not folder.is_absolute() and not folder.resolve().is_relative_to(Path("data").resolve()):
        raise ValueError(
            f"checkpoint_dir '{path}' points outside the project's data/ folder; "
            "give an absolute path to write elsewhere on purpose."
        )
    return folder


def train_view_model(
    slices: dict[str, Callable[[], SliceStack]],
    case_index: list[dict],
    params: TrainingParams,
    checkpoint_dir: str,
    *,
    view: str,
    variant: str,
) -> tuple[dict, pd.DataFrame, Figure]:
    """Train one slice model for one view; returns its best checkpoint, history and curves.

    ``variant`` names the model (any architecture, see ``params.architecture``); its
    checkpoints live in ``checkpoint_dir/<variant>/``.

    ``best`` and ``last`` checkpoints are written after every epoch under ``checkpoint_dir``
    so a killed run resumes (``resume: true``); the best one is also the node's output, which
    the catalog stores for the inference pipeline. With ``params.processes`` > 1 the model
    trains in that many torchrun processes (``training.distributed``).
    """
    folder = output_folder(checkpoint_dir) / variant
    best = TorchCheckpointDataset(filepath=str(folder / f"{view}_best.pt"))
    last = TorchCheckpointDataset(filepath=str(folder / f"{view}_last.pt"))
    run = train_in_processes if params.processes > 1 else train
    result = run(
        load_split(slices, case_index, "train"),
        load_split(slices, case_index, "val"),
        params,
        last_checkpoint=last,
        best_checkpoint=best,
        twin_of={r["case_id"]: r["twin_of"] for r in case_index if r.get("twin_of")},
    )
    logger.info("%s %s: best epoch %d of %d", variant, view, result.best_epoch, len(result.history))
    title = f"{variant} ({params.architecture}) model, {view} view"
    checkpoint = {**best.load(), "view": view}  # inference refuses a model of another view
    return (
        checkpoint,
        result.history,
        training_curves_figure(result.history, best_epoch=result.best_epoch, title=title),
    )
