"""Losses for the slice models, all computed from logits.

Conventions:
    * Inputs are raw logits (no sigmoid applied); targets are float tensors in ``{0, 1}`` of the
      same shape. Probabilities are ``p = sigmoid(logit)``.
    * Classification: binary cross-entropy on the ``(B,)`` slice logit, mean over the batch.
    * Segmentation: either focal loss (mean over all pixels of the batch) or focal Tversky loss
      (ONE Tversky index over all pixels of the batch, not a mean of per-image indices, so slices
      with empty masks contribute their false positives instead of an undefined ratio).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vertebral_fracture.models.base.output import SliceLogits

SEG_LOSSES = ("focal", "focal_tversky")
#: Default weights of :class:`MultiTaskLoss` (and of the training parameters). The brief's
#: segmentation weight 0.1 gave lower fused PR-AUC than 1.0 and 3.0 on paired demo seeds
#: (benchmarks/README.md).
CLASS_WEIGHT = 1.0
SEG_WEIGHT = 3.0


def _check_same_shape(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have the same shape, got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
) -> torch.Tensor:
    """Binary focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

    ``FL = -alpha_t * (1 - p_t)^gamma * log(p_t)`` with ``p_t = p`` where ``target = 1`` and
    ``1 - p`` where ``target = 0``; ``alpha_t = alpha`` on positives and ``1 - alpha`` on
    negatives. ``log(p_t)`` is taken from the logits (binary cross-entropy with logits, i.e.
    log-sigmoid), so it is stable for large ``|logit|``.

    Args:
        logits: pixel logits, any shape (e.g. ``(B, 1, H, W)``).
        target: same shape, float in ``{0, 1}``.
        gamma: focusing parameter ``>= 0`` (0 gives plain BCE). Paper default 2.
        alpha: positive-class weight in ``[0, 1]``; the paper's best setting with ``gamma = 2`` is
            0.25 (it *down*-weights positives, the focal term already suppresses easy
            negatives). ``None`` disables the weighting (``alpha_t = 1``).

    Returns:
        Scalar mean over all elements.
    """
    _check_same_shape(logits, target)
    _check_non_negative(gamma=gamma)
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] or None, got {alpha!r}")
    target = target.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # -log(p_t)
    p_t = torch.exp(-ce)
    loss = (1.0 - p_t) ** gamma * ce
    if alpha is not None:
        loss = (alpha * target + (1.0 - alpha) * (1.0 - target)) * loss
    return loss.mean()


def focal_tversky_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    fn_weight: float = 0.7,
    fp_weight: float = 0.3,
    gamma: float = 4.0 / 3.0,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Focal Tversky loss (Abraham & Khan, ISBI 2019, arXiv:1810.07842).

    With soft counts over ALL pixels of the batch, ``p = sigmoid(logits)``::

        TP = sum(p * t)   FN = sum((1 - p) * t)   FP = sum(p * (1 - t))
        TI = (TP + smooth) / (TP + fn_weight * FN + fp_weight * FP + smooth)
        loss = (1 - TI) ** (1 / gamma)

    ``fn_weight`` multiplies the FALSE NEGATIVES and ``fp_weight`` the FALSE POSITIVES (libraries
    disagree on whether "alpha" or "beta" weights FN, hence the explicit names). The paper's
    setting ``fn_weight = 0.7, fp_weight = 0.3, gamma = 4/3`` (exponent 0.75) favours recall of
    small lesions. On a batch with an empty mask (``TP = FN = 0``) the index is
    ``smooth / (fp_weight * FP + smooth)``, so the loss still grows with predicted foreground
    (``smooth`` must be > 0 for this, and sets how fast: 1 pixel's worth by default).

    Args:
        logits: pixel logits, e.g. ``(B, 1, H, W)``.
        target: same shape, float in ``{0, 1}``.
        fn_weight: weight of false negatives, ``>= 0``.
        fp_weight: weight of false positives, ``>= 0``.
        gamma: focal parameter ``> 0``; the loss is ``(1 - TI)^(1/gamma)``.
        smooth: additive smoothing ``> 0`` in numerator and denominator (in pixels).

    Returns:
        Scalar loss in ``[0, 1]``.
    """
    _check_same_shape(logits, target)
    _check_non_negative(fn_weight=fn_weight, fp_weight=fp_weight)
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    if not smooth > 0:
        raise ValueError(f"smooth must be > 0, got {smooth!r}")
    p = torch.sigmoid(logits)
    target = target.to(p.dtype)
    tp = (p * target).sum()
    fn = ((1.0 - p) * target).sum()
    fp = (p * (1.0 - target)).sum()
    tversky = (tp + smooth) / (tp + fn_weight * fn + fp_weight * fp + smooth)
    # Clamp: d/dx x^(1/gamma) is infinite at x = 0 for gamma > 1 (a saturated perfect prediction).
    return (1.0 - tversky).clamp_min(1e-6) ** (1.0 / gamma)


class MultiTaskLoss(nn.Module):
    """``total = class_weight * BCE(class_logit, class_target) + seg_weight * seg_loss``.

    The classification term is :func:`torch.nn.functional.binary_cross_entropy_with_logits`
    (mean over the batch). The segmentation term is :func:`focal_loss` or
    :func:`focal_tversky_loss` on the pixel logits; it is a zero tensor when the model has no
    segmentation head (``logits.seg_logit is None``).

    Args:
        class_weight: weight of the classification term, ``>= 0``.
        seg_weight: weight of the segmentation term, ``>= 0`` (see :data:`SEG_WEIGHT`).
        seg_loss: ``"focal"`` or ``"focal_tversky"``.
        focal_gamma, focal_alpha: parameters of :func:`focal_loss`.
        tversky_fn_weight, tversky_fp_weight, tversky_gamma, tversky_smooth: parameters of
            :func:`focal_tversky_loss`.

    Shapes (forward):
        logits: :class:`SliceLogits` with ``class_logit (B,)`` and ``seg_logit (B, 1, H, W)`` or
        ``None``; class_target ``(B,)``; mask_target ``(B, 1, H, W)``; both float in ``{0, 1}``.
        Returns ``{"total", "class", "seg"}`` scalar tensors (``total`` carries the gradient).
    """

    def __init__(
        self,
        *,
        class_weight: float = CLASS_WEIGHT,
        seg_weight: float = SEG_WEIGHT,
        seg_loss: Literal["focal", "focal_tversky"] = "focal_tversky",
        focal_gamma: float = 2.0,
        focal_alpha: float | None = 0.25,
        tversky_fn_weight: float = 0.7,
        tversky_fp_weight: float = 0.3,
        tversky_gamma: float = 4.0 / 3.0,
        tversky_smooth: float = 1.0,
    ) -> None:
        super().__init__()
        _check_non_negative(
            class_weight=class_weight,
            seg_weight=seg_weight,
            focal_gamma=focal_gamma,
            tversky_fn_weight=tversky_fn_weight,
            tversky_fp_weight=tversky_fp_weight,
        )
        if seg_loss not in SEG_LOSSES:
            raise ValueError(f"unknown seg_loss {seg_loss!r}; choose one of {list(SEG_LOSSES)}")
        if focal_alpha is not None and not 0.0 <= focal_alpha <= 1.0:
            raise ValueError(f"focal_alpha must be in [0, 1] or None, got {focal_alpha!r}")
        if not tversky_gamma > 0:
            raise ValueError(f"tversky_gamma must be > 0, got {tversky_gamma!r}")
        if not tversky_smooth > 0:
            raise ValueError(f"tversky_smooth must be > 0, got {tversky_smooth!r}")
        self.class_weight = class_weight
        self.seg_weight = seg_weight
        self.seg_loss = seg_loss
        self.focal_gamma = focal_gamma
        self.focal_alpha = focal_alpha
        self.tversky_fn_weight = tversky_fn_weight
        self.tversky_fp_weight = tversky_fp_weight
        self.tversky_gamma = tversky_gamma
        self.tversky_smooth = tversky_smooth

    def segmentation_loss(self, seg_logit: torch.Tensor, mask_target: torch.Tensor) -> torch.Tensor:
        """The configured segmentation loss on ``(B, 1, H, W)`` logits and mask."""
        if self.seg_loss == "focal":
            return focal_loss(
                seg_logit, mask_target, gamma=self.focal_gamma, alpha=self.focal_alpha
            )
        return focal_tversky_loss(
            seg_logit,
            mask_target,
            fn_weight=self.tversky_fn_weight,
            fp_weight=self.tversky_fp_weight,
            gamma=self.tversky_gamma,
            smooth=self.tversky_smooth,
        )

    def deeply_supervised_loss(
        self, seg_logits: tuple[torch.Tensor, ...], mask_target: torch.Tensor
    ) -> torch.Tensor:
        """Segmentation loss over the full-resolution logits and any coarser auxiliary ones.

        Auxiliary logits are upsampled (bilinear) to the mask, so every scale is scored against
        the same full-resolution mask; scale ``k`` (0 = full resolution) weighs ``2**-k``, the
        weights normalised to sum to 1 (nnU-Net's scheme, Isensee et al. 2021), so the term
        keeps the scale of a single loss. With one logit map this is the plain loss.
        """
        weights = torch.tensor([2.0**-k for k in range(len(seg_logits))])
        weights = weights / weights.sum()
        total = seg_logits[0].new_zeros(())
        for weight, logit in zip(weights.tolist(), seg_logits, strict=True):
            if logit.shape[-2:] != mask_target.shape[-2:]:
                logit = F.interpolate(
                    logit, size=mask_target.shape[-2:], mode="bilinear", align_corners=False
                )
            total = total + weight * self.segmentation_loss(logit, mask_target)
        return total

    def forward(
        self, logits: SliceLogits, class_target: torch.Tensor, mask_target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        _check_same_shape(logits.class_logit, class_target)
        class_loss = F.binary_cross_entropy_with_logits(
            logits.class_logit, class_target.to(logits.class_logit.dtype)
        )
        if logits.seg_logit is None:
            seg_loss = class_loss.new_zeros(())
        else:
            seg_loss = self.deeply_supervised_loss(
                (logits.seg_logit, *logits.aux_seg_logits), mask_target
            )
        total = self.class_weight * class_loss + self.seg_weight * seg_loss
        return {"total": total, "class": class_loss, "seg": seg_loss}

    def extra_repr(self) -> str:
        return (
            f"class_weight={self.class_weight}, seg_weight={self.seg_weight}, "
            f"seg_loss={self.seg_loss!r}"
        )
