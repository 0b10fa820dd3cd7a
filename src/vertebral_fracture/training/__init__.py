"""Training engine for the slice models (plain modules; the Kedro nodes call into these)."""

from vertebral_fracture.training.augmentation import SliceAugmenter, build_augmenter
from vertebral_fracture.training.config import (
    ARCHITECTURE_KEYS,
    AugmentationParams,
    LrSchedulerParams,
    TrainingParams,
)
from vertebral_fracture.training.data import SliceDataset, neighbour_indices
from vertebral_fracture.training.loop import (
    HISTORY_COLUMNS,
    CheckpointStore,
    IncompatibleCheckpointError,
    TrainingResult,
    build_loss,
    build_model_from_params,
    check_checkpoint_compatible,
    evaluate,
    load_model_from_checkpoint,
    make_checkpoint,
    resolve_device,
    train,
    train_step,
    training_curves_figure,
)
from vertebral_fracture.training.sampler import BalancedSliceSampler, epoch_rng

__all__ = [
    "ARCHITECTURE_KEYS",
    "HISTORY_COLUMNS",
    "AugmentationParams",
    "BalancedSliceSampler",
    "CheckpointStore",
    "IncompatibleCheckpointError",
    "LrSchedulerParams",
    "SliceAugmenter",
    "SliceDataset",
    "TrainingParams",
    "TrainingResult",
    "build_augmenter",
    "build_loss",
    "build_model_from_params",
    "check_checkpoint_compatible",
    "epoch_rng",
    "evaluate",
    "load_model_from_checkpoint",
    "make_checkpoint",
    "neighbour_indices",
    "resolve_device",
    "train",
    "train_step",
    "training_curves_figure",
]
