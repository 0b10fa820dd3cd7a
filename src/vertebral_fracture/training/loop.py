"""Training loop: Adam + ReduceLROnPlateau, early stopping, per-epoch validation, checkpoints.

Reproducibility design (CPU, same seed => same weights and metrics):

* every epoch starts by re-seeding torch from ``(seed, epoch)``, and the sampler draws the epoch's
  slice order and one augmentation seed per slice from ``(seed, epoch)``; nothing random carries
  over from one epoch to the next except through the model / optimizer / scheduler state;
* so a run killed after epoch ``k`` and resumed from its ``last`` checkpoint (model, optimizer,
  scheduler, early-stopping counters, history) replays epochs ``k+1..`` exactly as an
  uninterrupted run would. The stored RNG states are restored too, for anything outside epochs.

Checkpoints are plain dicts (tensors, Python scalars, lists, dicts) so they load with
``torch.load(weights_only=True)``; see :func:`make_checkpoint` for the layout. The loop only needs
objects with ``load() / save(dict) / exists()`` for the ``last`` and ``best`` checkpoints (e.g.
:class:`~vertebral_fracture.datasets.checkpoint_dataset.TorchCheckpointDataset`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score
from threadpoolctl import threadpool_limits
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from vertebral_fracture.losses import MultiTaskLoss
from vertebral_fracture.models import build_model
from vertebral_fracture.progress import Progress
from vertebral_fracture.slicing import SliceStack, spine_windows
from vertebral_fracture.training.augmentation import build_augmenter
from vertebral_fracture.training.config import ARCHITECTURE_KEYS, TrainingParams
from vertebral_fracture.training.data import SliceDataset
from vertebral_fracture.training.sampler import BalancedSliceSampler, BatchShard, epoch_rng

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vertebral_fracture.training.checkpoint/1"
HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_class_pr_auc",
    "val_dice",
    "lr",
    "seconds",
)
# NHWC tensors: oneDNN (CPU) and cuDNN run these convolutions faster than NCHW (2 CPU cores,
# multitask model on 16x1x128x128: training step 0.63 -> 0.47 s, inference batch 0.15 -> 0.13 s,
# measured side by side in one process at commit b8b5b04).
MEMORY_FORMAT = torch.channels_last
# Parameters that may change between a run and its resumption without a warning.
_RESUME_FREE_KEYS = {
    "resume",
    "max_epochs",
    "num_threads",
    "num_workers",
    "device",
    "processes",
    "micro_batches",
}


class CheckpointStore(Protocol):
    """Anything that can hold one checkpoint dict (a Kedro dataset fits)."""

    def load(self) -> dict[str, Any]: ...

    def save(self, data: dict[str, Any]) -> None: ...

    def exists(self) -> bool: ...


class IncompatibleCheckpointError(ValueError):
    """A checkpoint does not fit the requested architecture / parameters."""


@dataclass
class TrainingResult:
    """Outcome of :func:`train`.

    Attributes:
        model: the network with the BEST epoch's weights (best ``params.monitor``), on CPU, in
            eval mode.
        history: one row per epoch, columns ``HISTORY_COLUMNS``.
        best_epoch: epoch (1-based) of the best ``params.monitor`` figure (the checkpoint
            kept as best).
        stopped_early: early stopping ended the run before ``max_epochs``.
        resumed_from_epoch: last completed epoch of the resumed checkpoint, or None.
    """

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    stopped_early: bool
    resumed_from_epoch: int | None = None


# --------------------------------------------------------------------------- building blocks


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without CUDA raises."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but CUDA is not available")
    return torch.device(device)


def build_model_from_params(
    params: TrainingParams | Mapping[str, Any], *, load_pretrained: bool = True
) -> nn.Module:
    """``build_model`` with the architecture fields of ``params``."""
    if not isinstance(params, TrainingParams) and "architecture" not in params:
        raise KeyError("architecture")  # no default network for a checkpoint that names none
    # checkpoints written before a field existed hold its default
    p = params if isinstance(params, TrainingParams) else TrainingParams.model_construct(**params)
    return build_model(
        p.architecture,
        encoder=p.encoder,
        in_channels=int(p.in_channels),
        dropout=float(p.dropout),
        attention_gates=bool(p.attention_gates),
        deep_supervision=bool(p.deep_supervision),
        pretrained_weights=p.pretrained_weights if load_pretrained else None,
    )


def build_loss(params: TrainingParams) -> MultiTaskLoss:
    return MultiTaskLoss(
        class_weight=params.class_weight, seg_weight=params.seg_weight, seg_loss=params.seg_loss
    )


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX512-BF16 or AMX, via oneDNN);
    elsewhere bfloat16 is emulated and slower than float32."""
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def resolve_autocast_dtype(params: TrainingParams, device: torch.device) -> torch.dtype | None:
    """float16 on CUDA with ``mixed_precision``; bfloat16 on a CPU that computes it natively
    with ``cpu_bfloat16``; None (float32) otherwise."""
    if device.type == "cuda":
        return torch.float16 if params.mixed_precision else None
    if device.type == "cpu" and params.cpu_bfloat16 and cpu_computes_bfloat16():
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``dtype`` on ``device``; a no-op for None (float32)."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def _to_float32(logits: Any) -> Any:
    seg = logits.seg_logit
    return logits._replace(
        class_logit=logits.class_logit.float(),
        seg_logit=None if seg is None else seg.float(),
        aux_seg_logits=tuple(aux.float() for aux in logits.aux_seg_logits),
    )


def train_step(
    model: nn.Module,
    batch: Sequence[torch.Tensor],
    loss_fn: MultiTaskLoss,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    autocast_dtype: torch.dtype | None = None,
    grad_clip_norm: float | None = None,
    micro_batches: int = 1,
    chunk_seeds: Sequence[int] | None = None,
) -> float:
    """One optimizer step on ``(images, class_targets, masks)``; returns the total loss (the
    mean over micro-batches).

    With ``micro_batches`` > 1 the batch is split in that many parts, each part's loss
    (divided by their number) is back-propagated and the gradients accumulate before the
    step. ``chunk_seeds`` (one per part) reseed the random generator before each part's
    forward pass, so dropout depends on a sample's place in the batch only: processes of a
    distributed run and the micro-batches of one process draw alike.
    """
    tensors = [t.to(device, non_blocking=True) for t in batch]
    parts = [tensors]
    if micro_batches > 1:
        parts = list(zip(*(t.chunk(micro_batches) for t in tensors), strict=True))
    scaled = scaler is not None and scaler.is_enabled()
    optimizer.zero_grad(set_to_none=True)
    value = 0.0
    for i, (images, class_target, mask) in enumerate(parts):
        if chunk_seeds is not None:
            torch.manual_seed(chunk_seeds[i])
        images = images.contiguous(memory_format=MEMORY_FORMAT)
        with _autocast(device, autocast_dtype):
            logits = model(images)
        losses = loss_fn(_to_float32(logits), class_target, mask)
        part = float(losses["total"].detach())
        if not math.isfinite(part) and not scaled:
            raise FloatingPointError(
                f"training loss is {part}: diverged (lower the learning rate?)"
            )
        value += part / len(parts)
        total = losses["total"] / len(parts) if len(parts) > 1 else losses["total"]
        (scaler.scale(total) if scaled else total).backward()
    if scaled:
        if grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        if grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        optimizer.step()
    return value


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: MultiTaskLoss,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Validation loss (slice-weighted mean), slice PR-AUC and pooled Dice at 0.5.

    PR-AUC is ``nan`` when no validation slice is positive; Dice is ``nan`` for models without a
    segmentation head, and when neither the masks nor the predictions hold a foreground pixel.
    """
    model.eval()
    loss_sum, count = 0.0, 0
    probs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    intersection, pred_sum, true_sum = 0, 0, 0
    has_seg = True
    for batch in loader:
        images, class_target, mask = (t.to(device, non_blocking=True) for t in batch)
        images = images.contiguous(memory_format=MEMORY_FORMAT)
        with _autocast(device, autocast_dtype):
            logits = model(images)
        logits = _to_float32(logits)
        losses = loss_fn(logits, class_target, mask)
        n = len(images)
        loss_sum += float(losses["total"]) * n
        count += n
        probs.append(torch.sigmoid(logits.class_logit).cpu().numpy())
        targets.append(class_target.cpu().numpy())
        if logits.seg_logit is None:
            has_seg = False
        else:
            pred = logits.seg_logit > 0.0  # sigmoid(x) > 0.5
            truth = mask > 0.5
            intersection += int((pred & truth).sum())
            pred_sum += int(pred.sum())
            true_sum += int(truth.sum())
    y_true = np.concatenate(targets) if targets else np.zeros(0)
    y_prob = np.concatenate(probs) if probs else np.zeros(0)
    pr_auc = (
        float(average_precision_score(y_true > 0.5, y_prob)) if (y_true > 0.5).any() else math.nan
    )
    denom = pred_sum + true_sum
    dice = 2.0 * intersection / denom if has_seg and denom > 0 else math.nan
    return {
        "loss": loss_sum / max(count, 1),
        "class_pr_auc": pr_auc,
        "dice": float(dice),
    }


@torch.inference_mode()
def hardest_negatives(
    model: nn.Module,
    dataset: SliceDataset,
    pool: np.ndarray,
    count: int,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """The ``count`` items of ``pool`` (indices of ``dataset``) that ``model`` scores highest.

    An item's score is the peak of ``model.fracture_probability`` over it (P_class x P_seg):
    a negative scored high is where the fused volume would hold a false positive. Online
    hard-example mining (Shrivastava et al., CVPR 2016) for negatives, once an epoch.

    Returns:
        (count,) int64 indices, in ``pool``'s order.
    """
    model.eval()
    peaks = []
    for start in range(0, len(pool), batch_size):
        items = [dataset[int(i)][0] for i in pool[start : start + batch_size]]
        images = torch.stack(items).to(device, memory_format=MEMORY_FORMAT)
        with _autocast(device, autocast_dtype):
            probability = model.fracture_probability(images)
        peaks.append(probability.float().amax(dim=(1, 2, 3)).cpu().numpy())
    hardest = np.argsort(-np.concatenate(peaks), kind="stable")[:count]
    return np.asarray(pool, dtype=np.int64)[np.sort(hardest)]


# --------------------------------------------------------------------------- checkpoints


def _cpu_state_dict(module_or_optimizer: Any) -> dict[str, Any]:
    def to_cpu(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", copy=True)
        if isinstance(value, dict):
            return {k: to_cpu(v) for k, v in value.items()}
        if isinstance(value, list):
            return [to_cpu(v) for v in value]
        return value

    return to_cpu(module_or_optimizer.state_dict())


def _plain(value: Any) -> Any:
    """Numpy scalars / containers -> Python types (torch.load(weights_only=True) safe)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def make_checkpoint(
    *,
    epoch: int,
    model: nn.Module,
    averaged: AveragedModel | None = None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    scaler: torch.amp.GradScaler | None,
    params: TrainingParams,
    history: list[dict[str, Any]],
    best_epoch: int,
    best_score: float,
    epochs_without_improvement: int,
    stopped_early: bool,
    numpy_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict written after each epoch (all values weights_only-loadable).

    With ``averaged`` (the moving average of ``model``'s weights) ``model_state_dict`` holds
    the average, what inference loads, and ``trained_state_dict`` the weights training goes
    on from.
    """
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    averaging = {}
    if averaged is not None:
        averaging = {
            "trained_state_dict": _cpu_state_dict(model),
            "averaged_steps": int(averaged.n_averaged),
        }
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "model_state_dict": _cpu_state_dict(model if averaged is None else averaged.module),
        **averaging,
        "optimizer_state_dict": _cpu_state_dict(optimizer),
        "scheduler_state_dict": _plain(scheduler.state_dict()),
        "scaler_state_dict": (
            _plain(scaler.state_dict()) if scaler is not None and scaler.is_enabled() else None
        ),
        "params": params.model_dump(mode="json"),
        "metrics": {
            "history": {col: [row[col] for row in history] for col in HISTORY_COLUMNS},
            "best_epoch": int(best_epoch),
            "monitor": params.resolved_monitor(),
            "best_score": float(best_score),
            "epochs_without_improvement": int(epochs_without_improvement),
            "stopped_early": bool(stopped_early),
        },
        "rng_state": {
            "torch": torch.get_rng_state(),
            "cuda": [s.cpu() for s in cuda_states],
            "numpy": _plain(numpy_state) if numpy_state is not None else None,
        },
    }


# what only resuming reads: the "best" checkpoint, served to inference, leaves it out (a third
# of the size: Adam keeps two moments per weight)
RESUME_ONLY_KEYS = (
    "trained_state_dict",
    "averaged_steps",
    "optimizer_state_dict",
    "scheduler_state_dict",
    "scaler_state_dict",
    "rng_state",
)


def served_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """``checkpoint`` without ``RESUME_ONLY_KEYS``: the weights served, params and metrics."""
    return {key: value for key, value in checkpoint.items() if key not in RESUME_ONLY_KEYS}


def check_checkpoint_compatible(
    checkpoint: Mapping[str, Any], expected: TrainingParams | Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return the checkpoint's stored params; raise when the architecture fields differ.

    Raises:
        IncompatibleCheckpointError: not a training checkpoint, or one of ``ARCHITECTURE_KEYS``
            (architecture, encoder, in_channels, slice_size) present in ``expected`` differs;
            the message names each mismatching parameter with both values.
    """
    if not isinstance(checkpoint, Mapping):
        raise IncompatibleCheckpointError(
            f"expected a checkpoint dict, got {type(checkpoint).__name__}"
        )
    missing = [k for k in ("params", "model_state_dict") if k not in checkpoint]
    if missing:
        raise IncompatibleCheckpointError(
            f"not a training checkpoint: missing key(s) {missing} (found {sorted(checkpoint)})"
        )
    stored = dict(checkpoint["params"])
    if expected is None:
        return stored
    wanted = expected.model_dump() if isinstance(expected, TrainingParams) else dict(expected)
    # keys added after a checkpoint was written hold their default there
    held = {
        key: stored.get(key, TrainingParams.model_fields[key].default)
        for key in ARCHITECTURE_KEYS
        if key in wanted
    }
    problems = [
        f"{key} is {value!r} in the checkpoint but {wanted[key]!r} is expected"
        for key, value in held.items()
        if value != wanted[key]
    ]
    if problems:
        raise IncompatibleCheckpointError("incompatible checkpoint: " + "; ".join(problems))
    return stored


def load_model_from_checkpoint(
    checkpoint: Mapping[str, Any],
    expected: TrainingParams | Mapping[str, Any] | None = None,
) -> nn.Module:
    """Rebuild the network from the checkpoint's stored params and load its weights (CPU, eval).

    ``expected`` (params or a dict with some of ``ARCHITECTURE_KEYS``) is checked first; see
    :func:`check_checkpoint_compatible`. Encoder pretrained weights are not read (the checkpoint
    holds all weights).
    """
    stored = check_checkpoint_compatible(checkpoint, expected)
    try:
        model = build_model_from_params(stored, load_pretrained=False)
    except (KeyError, ValueError, TypeError) as exc:
        raise IncompatibleCheckpointError(
            f"cannot rebuild the model from the checkpoint's params: {exc}"
        ) from exc
    try:
        model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    except RuntimeError as exc:
        arch = {k: stored.get(k) for k in ARCHITECTURE_KEYS}
        raise IncompatibleCheckpointError(
            f"checkpoint weights do not fit the architecture {arch}: {exc}"
        ) from exc
    return model.eval()


# --------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def _runtime_settings(device: torch.device, num_threads: int) -> Iterator[None]:
    """Threads / determinism for the run; the process's previous settings come back after."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_benchmark = torch.backends.cudnn.benchmark
    try:
        if device.type == "cpu":
            torch.set_num_threads(num_threads)
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = True  # fixed input shapes
        # numpy's BLAS (the augmentation's slice thickening) runs in the training process
        # between steps; on CPU its threads spin on after each call and took the cores from
        # torch's: steps of the coronal model 0.23 -> 0.17 s on 2 cores (None: no limit)
        with threadpool_limits(limits=1 if device.type == "cpu" else None, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_benchmark


def _world() -> tuple[int, int]:
    """(rank, number of processes) of this process's torch.distributed group; (0, 1) alone."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _chunk_seed(seed: int, epoch: int, step: int, chunk: int) -> int:
    """Random seed of one micro-batch (a batch's ``chunk``-th part) of a step."""
    return int(np.random.SeedSequence([seed, epoch, step, chunk]).generate_state(1)[0])


def _view_of(stacks: Sequence[SliceStack]) -> str:
    """The one view all training stacks are sliced in (a model learns one view)."""
    views = {stack.view for stack in stacks}
    if len(views) != 1:
        raise ValueError(f"training stacks must come from one view, got {sorted(views)}")
    return views.pop()


def _monitored_score(val: Mapping[str, float], monitor: str) -> float:
    """Higher is better; a NaN figure (no positives in validation) never counts as better."""
    key = {"val_loss": "loss", "val_dice": "dice", "val_class_pr_auc": "class_pr_auc"}[monitor]
    value = float(val[key])
    if math.isnan(value):
        return -math.inf
    return -value if monitor == "val_loss" else value


def _seed_epoch(seed: int, epoch: int) -> None:
    torch_seed = int(epoch_rng(seed, epoch, stream=0).integers(0, 2**62))
    torch.manual_seed(torch_seed)  # also seeds every CUDA device


def _history_frame(history: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    return frame.astype({"epoch": "int64"}) if len(frame) else frame


def _warn_changed_params(stored: Mapping[str, Any], params: TrainingParams) -> None:
    current = params.model_dump(mode="json")
    changed = sorted(
        key
        for key in set(stored) | set(current)
        if key not in _RESUME_FREE_KEYS and stored.get(key) != current.get(key)
    )
    if changed:
        logger.warning(
            "Resuming with changed parameters %s: the run will not match an uninterrupted one",
            {k: (stored.get(k), current.get(k)) for k in changed},
        )


def _window_dataset(
    stacks: Sequence[SliceStack], params: TrainingParams, cut_as: Mapping[int, int] | None = None
) -> SliceDataset:
    """The ``slice_size`` spine windows of ``stacks`` (not augmented); stack ``i`` is cut with
    the windows of stack ``cut_as[i]`` where given."""
    cut_as = cut_as or {}
    windows = {
        i: spine_windows(stacks[i], params.slice_size)
        for i in {cut_as.get(i, i) for i in range(len(stacks))}
    }
    return SliceDataset(
        stacks,
        params.in_channels,
        context_stride=params.context_stride,
        expected_size=params.slice_size,
        windows=[windows[cut_as.get(i, i)] for i in range(len(stacks))],
        window_size=params.slice_size,
    )


def _twin_stacks(stacks: Sequence[SliceStack], twin_of: Mapping[str, str]) -> dict[int, int]:
    """Index of each intact twin's stack -> index of its fractured case's, where both are given."""
    index = {stack.case_id: i for i, stack in enumerate(stacks)}
    return {index[t]: index[f] for t, f in twin_of.items() if t in index and f in index}


def train(
    train_stacks: Sequence[SliceStack],
    val_stacks: Sequence[SliceStack],
    params: TrainingParams | Mapping[str, Any],
    *,
    last_checkpoint: CheckpointStore | None = None,
    best_checkpoint: CheckpointStore | None = None,
    on_epoch_end: Callable[[pd.DataFrame], None] | None = None,
    progress: bool = True,
    twin_of: Mapping[str, str] | None = None,
) -> TrainingResult:
    """Train a slice model from scratch (or resume) on labelled slice stacks of one view.

    Args:
        train_stacks: training stacks (masks and spine required); their ``slice_size``
            spine windows (``spine_windows``) are sampled with ``positive_fraction`` fracture
            windows, ``steps_per_epoch * batch_size`` per epoch, augmented.
        val_stacks: validation stacks (masks and spine required); every spine window, in
            order, not augmented.
        params: :class:`TrainingParams` (or a dict validated into one).
        last_checkpoint: store written after every epoch; resumed from when ``params.resume``
            and it exists.
        best_checkpoint: store written whenever the monitored validation figure improves,
            with the served weights only (:func:`served_checkpoint`).
        on_epoch_end: called with the history so far after each epoch (and its checkpoints).
        progress: show progress per epoch with the running training loss (a bar on a
            terminal, log lines otherwise).
        twin_of: case id of an intact twin among ``train_stacks`` -> its fractured case's
            (``phantoms.intact_twins``): the twin is cut with that case's windows, and
            ``params.twin_negative_fraction`` of the negatives are the twins of the drawn
            fracture windows.

    Returns:
        :class:`TrainingResult` with the best-epoch model (CPU, eval mode) and the history.

    Raises:
        ValueError: empty splits, unlabelled stacks, or stacks without a spine.
        IncompatibleCheckpointError: resuming from a checkpoint of another architecture.
    """
    if not isinstance(params, TrainingParams):
        params = TrainingParams.model_validate(dict(params))
    device = resolve_device(params.device)
    autocast_dtype = resolve_autocast_dtype(params, device)
    amp = autocast_dtype == torch.float16  # float16 needs loss scaling, bfloat16 does not

    twin_stacks = _twin_stacks(train_stacks, twin_of or {})
    train_ds = _window_dataset(train_stacks, params, cut_as=twin_stacks)
    val_ds = _window_dataset(val_stacks, params)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(
            f"training needs slices in both splits (train: {len(train_ds)}, val: {len(val_ds)})"
        )
    train_ds.augmenter = build_augmenter(
        params.augmentation, train=True, view=_view_of(train_stacks)
    )
    bs = params.batch_size
    rank, world = _world()
    steps = params.steps_per_epoch or -(-len(train_ds) // bs)
    sampler = BalancedSliceSampler(
        train_ds.labels,
        steps * bs,
        params.positive_fraction,
        params.seed,
        positive_weights=(
            train_ds.lesion_balanced_weights() if params.positive_sampling == "lesion" else None
        ),
        twin_items=train_ds.twin_items(twin_stacks) if twin_stacks else None,
        twin_fraction=params.twin_negative_fraction,
    )
    if params.twin_negative_fraction and not twin_stacks:  # scans of your own have none
        logger.info("No training case has its intact twin: negatives are drawn as usual")
    elif twin_stacks:
        logger.info("%d intact twins pair with their fractured cases' windows", len(twin_stacks))
    hard_count = round(sampler.num_negatives * params.hard_negative_fraction)
    if hard_count and world > 1:
        raise ValueError("hard_negative_fraction needs one process (hard negatives are mined)")
    unaugmented = copy.copy(train_ds)  # the items themselves, to score for hard negatives
    unaugmented.augmenter = None
    pin = device.type == "cuda"
    train_loader = DataLoader(  # in a distributed run each process loads its share of a batch
        train_ds,
        batch_size=bs // world,
        sampler=BatchShard(sampler, bs, rank, world) if world > 1 else sampler,
        num_workers=params.num_workers,
        pin_memory=pin,
    )
    val_loader = DataLoader(
        val_ds, batch_size=bs, shuffle=False, num_workers=params.num_workers, pin_memory=pin
    )
    logger.info(
        "Training %s/%s on %s: %d train slices (%d positive), %d val slices, %d steps x %d",
        params.architecture,
        params.encoder,
        device,
        len(train_ds),
        int(train_ds.labels.sum()),
        len(val_ds),
        steps,
        bs,
    )

    resuming = bool(params.resume and last_checkpoint is not None and last_checkpoint.exists())
    with _runtime_settings(device, params.resolved_num_threads()):
        torch.manual_seed(params.seed)
        # when resuming, every weight comes from the checkpoint: skip the pretrained file
        model = build_model_from_params(params, load_pretrained=not resuming).to(
            device, memory_format=MEMORY_FORMAT
        )
        loss_fn = build_loss(params)
        # fused: one kernel over all 130 weight tensors instead of a loop of small ops per
        # tensor; a quarter of the update's time on CPU (9 vs 39 ms for the proposed model)
        optimizer = torch.optim.Adam(
            model.parameters(),
            lr=params.learning_rate,
            weight_decay=params.weight_decay,
            fused=True,
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=params.lr_scheduler.factor,
            patience=params.lr_scheduler.patience,
            min_lr=params.lr_scheduler.min_lr,
        )
        scaler = torch.amp.GradScaler("cuda", enabled=amp)

        history: list[dict[str, Any]] = []
        monitor = params.resolved_monitor()
        best_epoch, best_score, bad_epochs, stopped_early = 0, -math.inf, 0, False
        best_state: dict[str, torch.Tensor] | None = None
        start_epoch, resumed_from = 1, None

        if resuming:
            assert last_checkpoint is not None
            ckpt = last_checkpoint.load()
            stored = check_checkpoint_compatible(ckpt, params)
            _warn_changed_params(stored, params)
            model.load_state_dict(ckpt.get("trained_state_dict", ckpt["model_state_dict"]))
            optimizer.load_state_dict(ckpt["optimizer_state_dict"])
            scheduler.load_state_dict(ckpt["scheduler_state_dict"])
            if amp and ckpt.get("scaler_state_dict"):
                scaler.load_state_dict(ckpt["scaler_state_dict"])
            rng = ckpt.get("rng_state") or {}
            if isinstance(rng.get("torch"), torch.Tensor):
                torch.set_rng_state(rng["torch"])
            if rng.get("cuda") and torch.cuda.is_available():
                with contextlib.suppress(RuntimeError):  # other GPU count
                    torch.cuda.set_rng_state_all(rng["cuda"])
            metrics = ckpt["metrics"]
            cols = metrics["history"]
            history = [
                {col: cols[col][i] for col in HISTORY_COLUMNS} for i in range(len(cols["epoch"]))
            ]
            best_epoch = int(metrics["best_epoch"])
            best_score = float(metrics["best_score"])
            bad_epochs = int(metrics["epochs_without_improvement"])
            stopped_early = bool(metrics["stopped_early"])
            resumed_from = int(ckpt["epoch"])
            start_epoch = resumed_from + 1
            if best_epoch == resumed_from:
                best_state = ckpt["model_state_dict"]
            elif best_checkpoint is not None and best_checkpoint.exists():
                best = best_checkpoint.load()
                if int(best.get("epoch", -1)) == best_epoch:
                    best_state = best["model_state_dict"]
            if best_state is None:
                logger.warning(
                    "Best checkpoint of epoch %d not found: the result falls back to the "
                    "latest weights unless a later epoch improves",
                    best_epoch,
                )
            logger.info("Resuming after epoch %d (best epoch %d)", resumed_from, best_epoch)
        elif params.resume:
            logger.info("resume=True but no 'last' checkpoint exists: starting from scratch")
        # the weights validated, checkpointed for inference and returned: with ema_decay the
        # moving average of the trained ones, which damps the last steps' noise
        averaged = None
        if params.ema_decay is not None:
            averaged = AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(params.ema_decay), use_buffers=True
            )
            if resuming and "averaged_steps" in ckpt:
                averaged.module.load_state_dict(ckpt["model_state_dict"])
                averaged.n_averaged.fill_(ckpt["averaged_steps"])
        served = model if averaged is None else averaged.module
        net: nn.Module = model
        if world > 1:  # gradients averaged over the processes (each saw its share)
            ids = [device.index or torch.cuda.current_device()] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        parts = params.micro_batches
        # one process with micro-batches, or several: dropout seeded by the place in the batch
        spread = world > 1 or parts > 1

        for epoch in range(start_epoch, params.max_epochs + 1):
            if stopped_early:
                break
            started = time.perf_counter()
            _seed_epoch(params.seed, epoch)
            sampler.set_epoch(epoch)
            if hard_count and epoch > 1:  # epoch 1's model has not learned what is hard
                pool = epoch_rng(params.seed, epoch, stream=2).choice(
                    sampler.negatives, min(2 * hard_count, len(sampler.negatives)), replace=False
                )
                sampler.set_hard_negatives(
                    hardest_negatives(
                        served,
                        unaugmented,
                        pool,
                        hard_count,
                        device=device,
                        autocast_dtype=autocast_dtype,
                        batch_size=bs,
                    )
                )
            lr = float(optimizer.param_groups[0]["lr"])
            model.train()
            running, n_steps = 0.0, 0
            bar = Progress(
                train_loader,
                desc=f"epoch {epoch}/{params.max_epochs}",
                unit="step",
                enabled=progress,
            )
            for batch in bar:
                seeds = None
                if spread:
                    seeds = [
                        _chunk_seed(params.seed, epoch, n_steps, rank * parts + k)
                        for k in range(parts)
                    ]
                running += train_step(
                    net,
                    batch,
                    loss_fn,
                    optimizer,
                    device=device,
                    scaler=scaler,
                    autocast_dtype=autocast_dtype,
                    grad_clip_norm=params.grad_clip_norm,
                    micro_batches=parts,
                    chunk_seeds=seeds,
                )
                if averaged is not None:
                    averaged.update_parameters(model)
                n_steps += 1
                bar.set_postfix(loss=f"{running / n_steps:.4f}")
            if world > 1:  # the epoch's loss over all processes; one model to validate
                total = torch.tensor(running, dtype=torch.float64)
                dist.all_reduce(total)
                running = float(total) / world
                for module in (model,) if served is model else (model, served):
                    for buffer in module.buffers():
                        dist.broadcast(buffer, src=0)
            val = evaluate(
                served, val_loader, loss_fn, device=device, autocast_dtype=autocast_dtype
            )
            scheduler.step(val["loss"])

            # The validation loss is a poor judge of the best epoch: the sampler's positive share
            # differs from the validation prevalence, so BCE rises as recall improves.
            score = _monitored_score(val, monitor)
            improved = best_epoch == 0 or score > best_score
            if improved:
                best_epoch, best_score, bad_epochs = epoch, score, 0
            else:
                bad_epochs += 1
            patience = params.early_stopping_patience
            stopped_early = (
                patience is not None and bad_epochs >= patience and epoch < (params.max_epochs)
            )
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": running / max(n_steps, 1),
                    "val_loss": float(val["loss"]),
                    "val_class_pr_auc": float(val["class_pr_auc"]),
                    "val_dice": float(val["dice"]),
                    "lr": lr,
                    "seconds": time.perf_counter() - started,
                }
            )
            ckpt = make_checkpoint(
                epoch=epoch,
                model=model,
                averaged=averaged,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                params=params,
                history=history,
                best_epoch=best_epoch,
                best_score=best_score,
                epochs_without_improvement=bad_epochs,
                stopped_early=stopped_early,
                numpy_state=epoch_rng(params.seed, epoch + 1, stream=1).bit_generator.state,
            )
            if improved:
                best_state = ckpt["model_state_dict"]
                if best_checkpoint is not None and rank == 0:
                    best_checkpoint.save(served_checkpoint(ckpt))
            if last_checkpoint is not None and rank == 0:
                last_checkpoint.save(ckpt)
            row = history[-1]
            logger.info(
                "epoch %d: train_loss %.4f val_loss %.4f PR-AUC %.3f Dice %.3f lr %.2e (%.1fs)%s",
                epoch,
                row["train_loss"],
                row["val_loss"],
                row["val_class_pr_auc"],
                row["val_dice"],
                lr,
                row["seconds"],
                " *" if improved else "",
            )
            if on_epoch_end is not None and rank == 0:
                on_epoch_end(_history_frame(history))
            if stopped_early:
                logger.info("Early stopping after epoch %d (best epoch %d)", epoch, best_epoch)

        if best_state is not None:
            served.load_state_dict(best_state)
        served = served.to("cpu").eval()

    return TrainingResult(
        model=served,
        history=_history_frame(history),
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
    )


# --------------------------------------------------------------------------- reporting


def training_curves_figure(
    history: pd.DataFrame, *, best_epoch: int | None = None, title: str | None = None
) -> Figure:
    """Loss, validation metrics and learning rate per epoch (three panels); a dotted line
    marks ``best_epoch``, the epoch the monitor chose (``TrainingResult.best_epoch``)."""
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax_loss, ax_metric, ax_lr = fig.subplots(1, 3)
    epochs = history["epoch"] if len(history) else []
    if len(history):
        ax_loss.plot(epochs, history["train_loss"], marker="o", label="train")
        ax_loss.plot(epochs, history["val_loss"], marker="o", label="validation")
        ax_metric.plot(epochs, history["val_class_pr_auc"], marker="o", label="slice PR-AUC")
        if history["val_dice"].notna().any():
            ax_metric.plot(epochs, history["val_dice"], marker="o", label="Dice @0.5")
        ax_lr.plot(epochs, history["lr"], marker="o", color="tab:gray")
        ax_lr.set_yscale("log")
        if best_epoch is not None:
            for ax in (ax_loss, ax_metric, ax_lr):
                ax.axvline(best_epoch, color="tab:green", linestyle=":", linewidth=1)
            ax_metric.text(best_epoch, 1.0, " best", color="tab:green", va="top", fontsize=8)
    ax_loss.set(title="loss", xlabel="epoch")
    ax_metric.set(title="validation metrics", xlabel="epoch", ylim=(0.0, 1.02))
    ax_lr.set(title="learning rate", xlabel="epoch")
    for ax in (ax_loss, ax_metric):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    for ax in (ax_loss, ax_metric, ax_lr):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
