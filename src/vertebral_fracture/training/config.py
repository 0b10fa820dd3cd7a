"""Validated training parameters (pydantic v2): unknown keys and out-of-range values fail early."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vertebral_fracture.losses import CLASS_WEIGHT, SEG_WEIGHT
from vertebral_fracture.models.base.heads import CLASS_HEAD_DROPOUT

#: Parameters that fix the network's shape and what it reads: a checkpoint only loads where
#: these match.
ARCHITECTURE_KEYS: tuple[str, ...] = (
    "architecture",
    "encoder",
    "in_channels",
    "context_stride",
    "slice_size",
    "attention_gates",
    "deep_supervision",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentationParams(_Strict):
    """Joint image + mask augmentation of training slices (validation is never augmented)."""

    enabled: bool = True
    rotation_deg: float = Field(10.0, ge=0.0, le=180.0, description="max |rotation| in degrees")
    shift: float = Field(0.05, ge=0.0, lt=0.5, description="max |shift| as a fraction of size")
    scale: float = Field(0.1, ge=0.0, lt=1.0, description="zoom range 1 +/- scale")
    affine_p: float = Field(0.8, ge=0.0, le=1.0, description="probability of the affine step")
    flip: bool = Field(True, description="random left-right mirror, p=0.5 (none in sagittal)")
    noise_std: float = Field(
        0.02, ge=0.0, le=0.5, description="max std of Gaussian noise (intensity scale 0..1)"
    )
    brightness_contrast: float = Field(
        0.1, ge=0.0, le=1.0, description="brightness and contrast limit (p=0.5): HU scale/offset"
    )
    # scanner variety (image only): other resolutions, kernels and display curves than the
    # phantoms', so the models meet more than one scanner's look; 0 (or 1) turns one off
    slice_thickness: float = Field(
        4.0,
        ge=1.0,
        le=8.0,
        description="max factor of thicker scanner slices along z (partial volume, then linear "
        "interpolation back to the canonical grid), in every view (p=0.3)",
    )
    in_plane_downscale: float = Field(
        0.6,
        gt=0.0,
        le=1.0,
        description="smallest scale of in-plane down- then up-sampling: coarser pixels (p=0.2)",
    )
    blur_sigma: float = Field(
        1.0, ge=0.0, le=5.0, description="max sigma (px) of Gaussian blur: soft kernels (p=0.2)"
    )
    sharpen: float = Field(
        0.4, ge=0.0, le=1.0, description="max alpha of unsharp sharpening: sharp kernels (p=0.2)"
    )
    gamma: float = Field(
        0.2, ge=0.0, lt=1.0, description="gamma drawn in 1 +/- gamma (p=0.3)"
    )  # fmt: skip


class LrSchedulerParams(_Strict):
    """``ReduceLROnPlateau`` on the validation loss."""

    patience: int = Field(2, ge=0)
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    min_lr: float = Field(1e-6, ge=0.0)


class TrainingParams(_Strict):
    """Everything that defines one training run; stored verbatim in every checkpoint."""

    architecture: Literal["multitask", "baseline", "smp_unet"] = "multitask"
    encoder: Literal["resnet18", "efficientnet_b0"] = "resnet18"
    in_channels: int = Field(
        1, ge=1, le=15, description="1, or odd: 2.5D context (3 = slice and its two neighbours)"
    )
    context_stride: int = Field(
        1,
        ge=1,
        le=8,
        description="slices between the 2.5D channels: they span +/- stride x (in_channels // 2)",
    )
    slice_size: int = Field(
        256, ge=32, description="side (px) of the windows along the spine; multiple of 32"
    )
    dropout: float = Field(CLASS_HEAD_DROPOUT, ge=0.0, lt=1.0)
    attention_gates: bool = Field(
        True, description="multitask: attention-gated skips (False = plain U-Net, an ablation)"
    )
    deep_supervision: bool = Field(
        False, description="multitask: auxiliary segmentation losses on coarser decoder stages"
    )
    pretrained_weights: str | None = Field(
        None, description="path to encoder weights for build_model (None = random init)"
    )

    batch_size: int = Field(16, ge=1)
    max_epochs: int = Field(30, ge=1)
    steps_per_epoch: int | None = Field(
        None, ge=1, description="optimizer steps per epoch; None = one pass's worth of slices"
    )
    learning_rate: float = Field(3e-4, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    grad_clip_norm: float | None = Field(None, gt=0.0)

    class_weight: float = Field(CLASS_WEIGHT, ge=0.0)
    seg_weight: float = Field(SEG_WEIGHT, ge=0.0)
    seg_loss: Literal["focal", "focal_tversky"] = "focal_tversky"  # the method's
    positive_fraction: float = Field(
        0.3, gt=0.0, lt=1.0, description="share of fracture slices drawn per epoch"
    )
    twin_negative_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "share of each epoch's negative draws taken as the intact twins of the drawn "
            "fracture windows: the same window of the same phantom drawn without its fractures "
            "(phantoms.intact_twins), so the pair differs only in the fracture"
        ),
    )
    hard_negative_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "share of each epoch's negative draws, from the second epoch on, taken as the "
            "hardest of a random pool of twice as many negatives: those the model being trained "
            "scores highest (online hard-negative mining; one process only)"
        ),
    )
    positive_sampling: Literal["slice", "lesion"] = Field(
        "slice",
        description=(
            "how fracture slices are drawn: every slice alike, or every lesion (3D component "
            "of the mask) alike, so small lesions spanning few slices are not drowned out"
        ),
    )

    augmentation: AugmentationParams = Field(default_factory=AugmentationParams)
    lr_scheduler: LrSchedulerParams = Field(default_factory=LrSchedulerParams)
    monitor: Literal["auto", "val_loss", "val_dice", "val_class_pr_auc"] = Field(
        "auto",
        description=(
            "validation figure that picks the best checkpoint and drives early stopping; auto = "
            "val_dice for models with a segmentation head, val_class_pr_auc for the classifier"
        ),
    )
    early_stopping_patience: int | None = Field(
        5, ge=1, description="epochs without improvement of `monitor` before stopping; None = off"
    )

    seed: int = Field(42, ge=0)
    num_threads: int | None = Field(
        None, ge=1, description="CPU threads; None = min(4, os.cpu_count())"
    )
    num_workers: int = Field(
        0, ge=0, description="DataLoader workers (results do not depend on this)"
    )
    processes: int = Field(
        1,
        ge=1,
        description=(
            "training processes sharing each batch (torch.distributed DDP, started with "
            "torchrun: gloo on CPU, NCCL on CUDA); the result equals one process with "
            "micro_batches = processes"
        ),
    )
    micro_batches: int = Field(
        1, ge=1, description="each batch as this many micro-batches, gradients accumulated"
    )
    ema_decay: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="exponential moving average of the weights (Polyak and Juditsky 1992) "
        "with this decay per step, validated, checkpointed and returned in place of the "
        "trained weights; None: the trained weights",
    )
    resume: bool = Field(False, description="continue from the 'last' checkpoint when it exists")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = Field(True, description="float16 autocast + GradScaler; CUDA only")
    cpu_bfloat16: bool = Field(
        False,
        description="bfloat16 autocast on a CPU that computes it natively (AVX512-BF16, AMX); "
        "float32 on other CPUs, where bfloat16 is emulated and slower",
    )

    @field_validator("in_channels")
    @classmethod
    def _odd_channels(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"in_channels must be 1 or odd (slice +/- k neighbours), got {value}")
        return value

    @field_validator("slice_size")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32 != 0:
            raise ValueError(f"slice_size must be a multiple of 32, got {value}")
        return value

    @model_validator(mode="after")
    def _batch_shares(self) -> TrainingParams:
        if self.batch_size % (self.processes * self.micro_batches):
            raise ValueError(
                f"batch_size {self.batch_size} does not split into {self.processes} processes "
                f"x {self.micro_batches} micro-batches"
            )
        return self

    def resolved_monitor(self) -> str:
        """``monitor`` with ``auto`` resolved for this architecture."""
        if self.monitor != "auto":
            return self.monitor
        return "val_class_pr_auc" if self.architecture == "baseline" else "val_dice"

    def resolved_num_threads(self) -> int:
        """``num_threads``, or ``min(4, os.cpu_count())`` when unset."""
        if self.num_threads is not None:
            return self.num_threads
        return max(1, min(4, os.cpu_count() or 1))

    def architecture_dict(self) -> dict[str, object]:
        """The parameters that fix the network's shape (see ``ARCHITECTURE_KEYS``)."""
        return {key: getattr(self, key) for key in ARCHITECTURE_KEYS}
