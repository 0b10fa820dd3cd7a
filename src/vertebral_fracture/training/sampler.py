"""Class-balanced slice sampler: a fixed share of fracture slices, reproducible per (seed, epoch).

Fracture slices are rare, so each epoch draws ``num_samples`` slices of which
``round(num_samples * positive_fraction)`` are positives. Within each class, slices are taken
from successive random permutations (every slice once before any repeats), or, with
``positive_weights``, positives are drawn with those probabilities (e.g. the same total for
every lesion, so a thin break on a few slices is seen as often as a collapse on many; see
``SliceDataset.lesion_balanced_weights``). Negatives given by ``set_hard_negatives`` (the
model's hardest, mined by the training loop) are drawn first, then, with ``twin_items``, the
intact twins of the epoch's positives (``twin_fraction`` of the negatives, each augmented as
its positive is), the rest as above. Together with each index the sampler yields an
augmentation seed, so augmentation does not depend on DataLoader workers or on what ran
before: epoch ``e`` of seed ``s`` is always the same sequence.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """Independent generator for ``(seed, epoch, stream)``: order of use never matters."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, stream]))


def _draw(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` items of ``pool`` from successive permutations (no repeat before exhaustion)."""
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    reps = -(-count // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:count]


class BalancedSliceSampler(Sampler[tuple[int, int]]):
    """Yield ``(dataset_index, augmentation_seed)`` pairs; call ``set_epoch`` before each epoch."""

    def __init__(
        self,
        labels: np.ndarray,
        num_samples: int,
        positive_fraction: float,
        seed: int = 0,
        positive_weights: np.ndarray | None = None,
        twin_items: np.ndarray | None = None,
        twin_fraction: float = 0.0,
    ) -> None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) == 0:
            raise ValueError("BalancedSliceSampler needs at least one slice")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if not 0.0 < positive_fraction < 1.0:
            raise ValueError(f"positive_fraction must lie in (0, 1), got {positive_fraction}")
        self.positives = np.flatnonzero(labels > 0)
        self.negatives = np.flatnonzero(labels == 0)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0
        n_pos = int(round(self.num_samples * positive_fraction))
        if len(self.positives) == 0:
            warnings.warn(
                "No fracture (positive) slices in the training data: sampling negatives only",
                RuntimeWarning,
                stacklevel=2,
            )
            n_pos = 0
        elif len(self.negatives) == 0:
            warnings.warn(
                "No negative slices in the training data: sampling positives only",
                RuntimeWarning,
                stacklevel=2,
            )
            n_pos = self.num_samples
        self.num_positives = n_pos
        self.hard_negatives = np.zeros(0, dtype=np.int64)
        self.positive_fraction = n_pos / self.num_samples
        self.twin_items = None
        if twin_items is not None:
            twin_items = np.asarray(twin_items, dtype=np.int64).reshape(-1)
            paired = twin_items >= 0
            if twin_items.shape != labels.shape or not (labels[twin_items[paired]] == 0).all():
                raise ValueError("twin_items must give one negative item (or -1) per item")
            self.twin_items = twin_items
        self.num_twins = int(round(self.num_negatives * twin_fraction))
        self.positive_p = None
        if positive_weights is not None:
            weights = np.asarray(positive_weights, dtype=np.float64).reshape(-1)
            if weights.shape != labels.shape or (weights < 0).any():
                raise ValueError("positive_weights must be one non-negative weight per slice")
            weights = weights[self.positives]
            if len(weights) and weights.sum() <= 0:
                raise ValueError("positive_weights are all zero on the positive slices")
            self.positive_p = weights / weights.sum() if len(weights) else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def num_negatives(self) -> int:
        return self.num_samples - self.num_positives

    def set_hard_negatives(self, indices: np.ndarray) -> None:
        """Negatives every following epoch draws before the others (at most its negative
        draws; empty: none)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) > self.num_negatives or not np.isin(indices, self.negatives).all():
            raise ValueError(
                f"hard negatives must be at most {self.num_negatives} of the negative slices"
            )
        self.hard_negatives = indices

    def indices(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's ``(indices, augmentation_seeds)`` arrays."""
        rng = epoch_rng(self.seed, self.epoch if epoch is None else epoch, stream=1)
        if self.positive_p is None:
            pos = _draw(self.positives, self.num_positives, rng)
        else:
            pos = rng.choice(self.positives, size=self.num_positives, p=self.positive_p)
        hard = self.hard_negatives
        paired = np.zeros(0, dtype=np.int64)  # draw positions of the positives with a twin
        if self.twin_items is not None:
            budget = min(self.num_twins, self.num_negatives - len(hard))
            paired = np.flatnonzero(self.twin_items[pos] >= 0)[:budget]
        twins = self.twin_items[pos[paired]] if len(paired) else paired
        rest = _draw(self.negatives, self.num_negatives - len(hard) - len(twins), rng)
        draws = np.concatenate([pos, hard, twins, rest]).astype(np.int64)
        shuffle = rng.permutation(len(draws))
        seeds = np.empty(len(draws), dtype=np.int64)
        seeds[shuffle] = rng.integers(0, 2**31 - 1, size=len(draws), dtype=np.int64)
        # a twin is augmented as its fracture window is: the two differ only in the fracture
        first_twin = len(pos) + len(hard)
        seeds[first_twin : first_twin + len(twins)] = seeds[paired]
        return draws[shuffle], seeds[shuffle]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order, seeds = self.indices()
        return iter(zip(order.tolist(), seeds.tolist(), strict=True))

    def __len__(self) -> int:
        return self.num_samples


class BatchShard(Sampler[tuple[int, int]]):
    """One process's share of another sampler's batches (distributed training).

    Process ``rank`` of ``world`` takes positions ``[rank * b, (rank + 1) * b)`` of every
    consecutive batch of ``batch_size`` draws (``b = batch_size // world``), with their
    augmentation seeds: the processes together see exactly the batches one process would.
    """

    def __init__(self, sampler: BalancedSliceSampler, batch_size: int, rank: int, world: int):
        if batch_size % world or len(sampler) % batch_size:
            raise ValueError(
                f"{world} processes cannot share batches of {batch_size} evenly "
                f"({len(sampler)} draws per epoch)"
            )
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        draws = list(self.sampler)
        share = self.batch_size // self.world
        for start in range(0, len(draws), self.batch_size):
            yield from draws[start + self.rank * share : start + (self.rank + 1) * share]

    def __len__(self) -> int:
        return len(self.sampler) // self.world
