"""Kedro dataset for PyTorch training checkpoints (plain dicts of tensors and Python values).

Checkpoints are read with ``torch.load(..., weights_only=True)``: only tensors and plain Python
containers/scalars are accepted, so a checkpoint file can never execute code on load. Writes are
atomic (temporary file beside the target, then ``os.replace``), so a crash mid-save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import pickle
import zipfile
from typing import Any

import torch
from kedro.io.core import DatasetError

from vertebral_fracture.datasets._base import FileDataset


class TorchCheckpointDataset(FileDataset):
    """Load/save a checkpoint ``dict`` with ``torch.save`` / ``torch.load(weights_only=True)``.

    Example catalog entry::

        model_checkpoint_last:
          type: vertebral_fracture.datasets.checkpoint_dataset.TorchCheckpointDataset
          filepath: data/06_models/sagittal/last.pt
    """

    def load(self) -> dict[str, Any]:
        path = self.url
        try:
            with self._readable() as local:
                data = torch.load(local, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # weights_only refused a non-tensor/non-plain object (or the pickle is corrupt)
            raise DatasetError(
                f"'{path}' is not a loadable checkpoint (refused by torch.load(weights_only=True) "
                f"or corrupt): {exc}"
            ) from exc
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
            raise DatasetError(
                f"Cannot read checkpoint '{path}' (truncated or not a torch checkpoint): {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise DatasetError(
                f"'{path}' does not hold a checkpoint dict (found {type(data).__name__})"
            )
        return data

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(
                f"TorchCheckpointDataset saves a dict, got {type(data).__name__} "
                f"(target '{self.url}')"
            )
        with self._writable(suffix=".pt") as tmp:
            torch.save(data, tmp)
