"""TorchCheckpointDataset: round trip, atomic writes, clear errors, weights_only safety."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from kedro.io.core import DatasetError

import vertebral_fracture.datasets.checkpoint_dataset as checkpoint_module
from vertebral_fracture.datasets.checkpoint_dataset import TorchCheckpointDataset

_EXECUTED: list[str] = []


def _mark_executed() -> str:
    _EXECUTED.append("ran")
    return "ran"


class _Malicious:
    """Unpickling this would call ``_mark_executed``: weights_only must refuse it."""

    def __reduce__(self):
        return (_mark_executed, ())


def _sample_checkpoint() -> dict:
    return {
        "epoch": 3,
        "model_state_dict": {"w": torch.randn(3, 4), "b": torch.zeros(4, dtype=torch.float16)},
        "metrics": {
            "history": {"epoch": [1, 2, 3], "val_dice": [0.1, math.nan, 0.3]},
            "best_val_loss": math.inf,
        },
        "params": {"architecture": "multitask", "slice_size": 64, "pretrained_weights": None},
        "rng_state": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.default_rng(7).bit_generator.state,  # 128-bit Python ints
        },
        "nested": [{"a": (1, 2)}, [torch.arange(3)]],
    }


def _assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def test_round_trip(tmp_path: Path) -> None:
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "models" / "last.pt"))
    assert not dataset.exists()
    data = _sample_checkpoint()
    dataset.save(data)
    assert dataset.exists()
    _assert_same(data, dataset.load())
    assert dataset._describe() == {"filepath": str(tmp_path / "models" / "last.pt")}


def test_failed_save_keeps_previous_file_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.pt"
    dataset = TorchCheckpointDataset(filepath=str(target))
    dataset.save({"epoch": 1, "w": torch.ones(2)})
    before = target.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 partial checkpoint bytes")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises((DatasetError, OSError), match="disk full"):
        dataset.save({"epoch": 2, "w": torch.zeros(2)})
    monkeypatch.undo()

    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    loaded = dataset.load()
    assert loaded["epoch"] == 1 and torch.equal(loaded["w"], torch.ones(2))


def test_truncated_file_raises_dataset_error_naming_path(tmp_path: Path) -> None:
    target = tmp_path / "best.pt"
    dataset = TorchCheckpointDataset(filepath=str(target))
    dataset.save(_sample_checkpoint())
    payload = target.read_bytes()
    target.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DatasetError, match="best.pt"):
        dataset.load()


def test_garbage_file_raises_dataset_error(tmp_path: Path) -> None:
    target = tmp_path / "notes.pt"
    target.write_text("this is not a checkpoint")
    with pytest.raises(DatasetError, match="notes.pt"):
        TorchCheckpointDataset(filepath=str(target)).load()


def test_missing_file_raises_dataset_error(tmp_path: Path) -> None:
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "nope.pt"))
    assert not dataset.exists()
    with pytest.raises(DatasetError, match="nope.pt"):
        dataset.load()


def test_custom_class_is_refused_not_executed(tmp_path: Path) -> None:
    target = tmp_path / "evil.pt"
    torch.save({"epoch": 1, "payload": _Malicious()}, target)
    _EXECUTED.clear()
    with pytest.raises(DatasetError, match="evil.pt"):
        TorchCheckpointDataset(filepath=str(target)).load()
    assert _EXECUTED == []


def test_non_dict_payload_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), target)
    with pytest.raises(DatasetError, match="checkpoint dict"):
        TorchCheckpointDataset(filepath=str(target)).load()
    with pytest.raises(DatasetError):
        TorchCheckpointDataset(filepath=str(tmp_path / "x.pt")).save([1, 2])
