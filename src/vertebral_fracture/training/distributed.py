"""Distributed data-parallel training with torchrun, outside the Kedro process.

A Kedro node must not run inside torchrun's processes: each would start the session again
(kedro-org/kedro#2049). So ``train_in_processes`` writes the node's slice stacks and
parameters to a folder, starts ``torchrun`` on this module, and reads back what rank 0
wrote; each process runs ``loop.train`` on its share of every batch (``BatchShard``), with
gradients averaged by DistributedDataParallel (gloo on CPU, NCCL on CUDA). Only rank 0
writes checkpoints, so ``resume`` works as for one process.

By hand, and on several machines, with a spec file on storage they all see (JSON:
``params``; ``train`` and ``val``, lists of slice-stack ``.npz`` files; ``last`` and ``best``
checkpoint paths; ``result``, where rank 0 writes the history)::

    torchrun --nnodes 2 --node-rank <0|1> --nproc-per-node 4 \\
        --rdzv-backend c10d --rdzv-endpoint <host of node 0>:29500 \\
        -m vertebral_fracture.training.distributed <folder>/spec.json
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist

from vertebral_fracture.datasets import SliceStackDataset, TorchCheckpointDataset
from vertebral_fracture.slicing import SliceStack
from vertebral_fracture.training.config import TrainingParams
from vertebral_fracture.training.loop import TrainingResult, load_model_from_checkpoint, train

logger = logging.getLogger(__name__)


def train_in_processes(
    train_stacks: Sequence[SliceStack],
    val_stacks: Sequence[SliceStack],
    params: TrainingParams,
    *,
    last_checkpoint: TorchCheckpointDataset,
    best_checkpoint: TorchCheckpointDataset,
    twin_of: Mapping[str, str] | None = None,
) -> TrainingResult:
    """``loop.train`` in ``params.processes`` processes started by torchrun on this machine.

    The returned result holds the best checkpoint's model (from ``best_checkpoint``) and the
    history; the stacks travel through a temporary folder.

    Raises:
        RuntimeError: a training process failed (its output is in the log).
    """
    with tempfile.TemporaryDirectory(prefix="ddp_") as folder:
        root = Path(folder)
        spec = {
            "params": params.model_dump(mode="json"),
            "last": str(last_checkpoint.filepath),
            "best": str(best_checkpoint.filepath),
            "result": str(root / "result.json"),
            "twin_of": dict(twin_of or {}),
        }
        for split, stacks in (("train", train_stacks), ("val", val_stacks)):
            spec[split] = []
            for i, stack in enumerate(stacks):
                path = root / f"{split}_{i:04d}.npz"
                SliceStackDataset(filepath=str(path)).save(stack)
                spec[split].append(str(path))
        (root / "spec.json").write_text(json.dumps(spec))
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={params.processes}",
            "-m",
            __name__,
            str(root / "spec.json"),
        ]
        logger.info("Training in %d processes: %s", params.processes, " ".join(command))
        if subprocess.run(command).returncode:
            raise RuntimeError(f"distributed training failed: {' '.join(command)}")
        result = json.loads((root / "result.json").read_text())
    return TrainingResult(
        model=load_model_from_checkpoint(best_checkpoint.load()),
        history=pd.DataFrame(result["history"]),
        best_epoch=int(result["best_epoch"]),
        stopped_early=bool(result["stopped_early"]),
        resumed_from_epoch=result["resumed_from_epoch"],
    )


def main(argv: list[str] | None = None) -> int:
    """One process of a distributed training (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)."""
    (spec_path,) = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(spec_path).read_text())
    params = TrainingParams.model_validate(spec["params"])
    cuda = params.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        rank = dist.get_rank()
        logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING)
        stacks = {
            split: [SliceStackDataset(filepath=path).load() for path in spec[split]]
            for split in ("train", "val")
        }
        result = train(
            stacks["train"],
            stacks["val"],
            params,
            last_checkpoint=TorchCheckpointDataset(filepath=spec["last"]),
            best_checkpoint=TorchCheckpointDataset(filepath=spec["best"]),
            progress=rank == 0,
            twin_of=spec["twin_of"],
        )
        if rank == 0:
            Path(spec["result"]).write_text(
                json.dumps(
                    {
                        "history": result.history.to_dict("list"),
                        "best_epoch": result.best_epoch,
                        "stopped_early": result.stopped_early,
                        "resumed_from_epoch": result.resumed_from_epoch,
                    }
                )
            )
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
