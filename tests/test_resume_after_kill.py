"""A training run killed with SIGKILL resumes from its last checkpoint and ends identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# A child process that trains a tiny model with resume on, writing checkpoints to argv[1].
CHILD = """
import sys
import torch
from tests.test_training import make_stack, tiny_params
from vertebral_fracture.datasets import TorchCheckpointDataset
from vertebral_fracture.training import train

folder = sys.argv[1]
params = tiny_params(max_epochs=4, steps_per_epoch=6, resume=True, num_threads=1)
result = train(
    [make_stack("a", seed=1), make_stack("b", seed=2)],
    [make_stack("c", seed=3)],
    params,
    last_checkpoint=TorchCheckpointDataset(filepath=f"{folder}/last.pt"),
    best_checkpoint=TorchCheckpointDataset(filepath=f"{folder}/best.pt"),
    progress=False,
)
history = result.history.drop(columns="seconds").to_dict()
torch.save({"weights": result.model.state_dict(), "history": history}, f"{folder}/final.pt")
"""


def _start(folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder)], cwd=ROOT)


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_result(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    reference.mkdir()
    interrupted.mkdir()
    assert _start(reference).wait(timeout=600) == 0

    child = _start(interrupted)
    deadline = time.monotonic() + 600
    while not (interrupted / "last.pt").exists():  # epoch 1 written: now inside epoch 2
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (interrupted / "final.pt").exists()
    killed_at = torch.load(interrupted / "last.pt", weights_only=True)["epoch"]
    assert killed_at < 4

    assert _start(interrupted).wait(timeout=600) == 0  # the same command again resumes
    expected = torch.load(reference / "final.pt", weights_only=True)
    resumed = torch.load(interrupted / "final.pt", weights_only=True)
    assert resumed["history"] == expected["history"]
    for name, tensor in expected["weights"].items():
        assert torch.equal(resumed["weights"][name], tensor), name
