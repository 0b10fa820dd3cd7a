"""Slice-wise inference: per-slice fracture probability maps, stacked back into volumes."""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
import torch
from torch import nn

from vertebral_fracture.preprocessing import to_native
from vertebral_fracture.progress import Progress
from vertebral_fracture.slicing import (
    SliceStack,
    add_window,
    assemble_volume,
    spine_windows,
    window_patch,
)
from vertebral_fracture.training.data import neighbour_indices
from vertebral_fracture.training.loop import MEMORY_FORMAT


@torch.inference_mode()
def predict_slices(
    model: nn.Module,
    stack: SliceStack,
    size: int,
    *,
    context_stride: int = 1,
    mirror_axis: int | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Fracture probability of every pixel of a stack's slices, from its spine windows.

    The model sees the ``size x size`` windows it was trained on (``spine_windows``), so
    P_class is computed over the same field of view as in training. ``model.fracture_probability``
    gives P_class x P_seg(x, y) for the multi-task model and P_class painted over the whole
    window for the slice classifier (the thesis baseline).

    Args:
        model: a model from ``vertebral_fracture.models.build_model``; each input holds
            ``model.in_channels`` slices (odd: the slice and its neighbours as context).
        stack: the slices, (N, H, W), with their spine.
        size: the training patch size (``slice_size``), a multiple of 32.
        context_stride: slices between the input channels, as in training.
        mirror_axis: a slice axis (0 rows, 1 columns) to mirror each window along and
            average the two predictions (test-time augmentation); the left-right axis
            (``training.augmentation.left_right_axis``), the one mirror anatomy allows and
            training draws. None: the windows as they are.
        batch_size: windows per forward pass.
        device: where to run.
        progress: show progress over batches (a bar on a terminal, log lines otherwise).

    Returns:
        (N, H, W) float32 probabilities in [0, 1]: the mean over the windows covering a
        pixel, 0 where no window reaches.
    """
    model.eval().to(device, memory_format=MEMORY_FORMAT)
    n, in_channels = len(stack.images), model.in_channels
    context = functools.partial(
        neighbour_indices, n_slices=n, in_channels=in_channels, stride=context_stride
    )
    windows = spine_windows(stack, size)
    total = np.zeros(stack.images.shape, dtype=np.float32)
    count = np.zeros(stack.images.shape, dtype=np.float32)
    ones = np.ones((size, size), dtype=np.float32)
    starts = range(0, len(windows), batch_size)
    for start in Progress(
        starts, desc=f"{stack.case_id} {stack.view}", unit="batch", enabled=progress
    ):
        batch_windows = windows[start : start + batch_size]
        batch = np.stack(
            [
                window_patch(stack.images, context(i), top, left, size)
                for i, top, left in batch_windows
            ]
        )
        x = torch.from_numpy(batch.astype(np.float32)).to(device, memory_format=MEMORY_FORMAT)
        probabilities = model.fracture_probability(x)
        if mirror_axis is not None:
            flip = (2 + mirror_axis,)  # (B, C, H, W): rows are dim 2
            mirrored = model.fracture_probability(x.flip(flip)).flip(flip)
            probabilities = (probabilities + mirrored) / 2
        probabilities = probabilities[:, 0].float().cpu().numpy()
        for (i, top, left), probability in zip(batch_windows, probabilities, strict=True):
            add_window(total, i, top, left, probability)
            add_window(count, i, top, left, ones)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def predict_volume(model: nn.Module, stack: SliceStack, size: int, **kwargs) -> np.ndarray:
    """(X, Y, Z) float32 probabilities on the stack's canonical grid (see ``predict_slices``)."""
    return assemble_volume(predict_slices(model, stack, size, **kwargs), stack)


def predict_on_scan_grid(
    model: nn.Module, stack: SliceStack, record: dict, size: int, **kwargs
) -> nib.Nifti1Image:
    """Probabilities of one view resampled onto the input scan's own grid (``record``'s affine
    and shape, as in the case index): float32, overlays the scan in 3D Slicer or ITK-SNAP.
    ``size`` and keyword arguments go to ``predict_slices``."""
    volume = predict_volume(model, stack, size, **kwargs)
    return to_native(volume, stack.affine, record["affine"], record["shape"])


@torch.inference_mode()
def attention_maps(
    model: nn.Module, stack: SliceStack, index: int, *, context_stride: int = 1
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Where an attention-gated model looks on one slice.

    Args:
        model: a model that records ``attention_maps`` in its forward pass (the multi-task model).
        stack: the slices; ``index`` selects one.
        context_stride: slices between the input channels, as in training.

    Returns:
        The (H, W) slice and its gates' coefficients, coarse to fine, each (h_i, w_i) in [0, 1].
    """
    model.eval()
    n = len(stack.images)
    channels = stack.images[neighbour_indices(index, n, model.in_channels, context_stride)]
    model(torch.from_numpy(channels[None].astype(np.float32)))
    alphas = [alpha[0, 0].float().cpu().numpy() for alpha in model.attention_maps]
    return stack.images[index].astype(np.float32), alphas
