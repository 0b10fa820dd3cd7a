"""Distributed training: torchrun processes on CPU (gloo) against one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_training import make_stack, tiny_params
from vertebral_fracture.datasets import TorchCheckpointDataset
from vertebral_fracture.training import train
from vertebral_fracture.training.distributed import train_in_processes
from vertebral_fracture.training.sampler import BalancedSliceSampler, BatchShard

pytestmark = pytest.mark.slow
#: BatchNorm running statistics: each process keeps rank 0's, one process updates them once
#: per micro-batch, so they are not compared (training uses batch statistics).
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def split():
    return [make_stack("t1", n=10, seed=1), make_stack("t2", n=8, seed=2)], [
        make_stack("v1", n=8, seed=3)
    ]


def _stores(folder, name):
    return {
        "last_checkpoint": TorchCheckpointDataset(filepath=str(folder / f"{name}_last.pt")),
        "best_checkpoint": TorchCheckpointDataset(filepath=str(folder / f"{name}_best.pt")),
    }


def _weights(stores) -> dict[str, torch.Tensor]:
    state = stores["last_checkpoint"].load()["model_state_dict"]
    return {k: v for k, v in state.items() if not k.endswith(RUNNING_STATS)}


def test_each_process_takes_its_share_of_every_batch():
    sampler = BalancedSliceSampler(np.arange(40) % 3 == 0, 24, 0.5, seed=4)
    shards = [list(BatchShard(sampler, 8, rank, 2)) for rank in (0, 1)]
    draws = list(sampler)
    rebuilt = [d for b in range(3) for shard in shards for d in shard[4 * b : 4 * b + 4]]
    assert rebuilt == draws  # batch by batch, rank 0's half then rank 1's
    with pytest.raises(ValueError, match="cannot share batches"):
        BatchShard(sampler, 8, 0, 3)


def test_two_processes_train_as_one_with_two_micro_batches(split, tmp_path):
    one = _stores(tmp_path, "one")
    two = _stores(tmp_path, "two")
    single = train(*split, tiny_params(micro_batches=2), progress=False, **one)
    distributed = train_in_processes(*split, tiny_params(processes=2), **two)
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    for key in a:  # float sums in another order: equal to float32 rounding
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    np.testing.assert_allclose(
        distributed.history["train_loss"], single.history["train_loss"], rtol=1e-5
    )
    assert distributed.best_epoch >= 1 and len(distributed.history) == 2


def test_a_distributed_run_resumes_where_it_stopped(split, tmp_path):
    full, part = _stores(tmp_path, "full"), _stores(tmp_path, "part")
    train_in_processes(*split, tiny_params(processes=2), **full)
    train_in_processes(*split, tiny_params(processes=2, max_epochs=1), **part)  # killed here
    resumed = train_in_processes(*split, tiny_params(processes=2, resume=True), **part)
    assert resumed.resumed_from_epoch == 1
    a, b = _weights(full), _weights(part)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_batches_must_split_between_processes():
    with pytest.raises(ValueError, match="does not split into 3 processes"):
        tiny_params(processes=3)
