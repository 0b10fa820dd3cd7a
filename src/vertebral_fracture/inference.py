"""Slice-wise inference: per-slice fracture probability maps, stacked back into volumes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from torch import nn

from vertebral_fracture.preprocessing import to_native
from vertebral_fracture.progress import Progress
from vertebral_fracture.slicing import SliceStack, assemble_volume
from vertebral_fracture.training.data import neighbour_indices
from vertebral_fracture.training.loop import MEMORY_FORMAT


@torch.inference_mode()
def predict_slices(
    model: nn.Module,
    stack: SliceStack,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Fracture probability of every pixel of every slice of a stack.

    ``model.fracture_probability`` gives P_class x P_seg(x, y) for the multi-task model and
    P_class painted over the whole slice for the slice classifier (the thesis baseline).

    Args:
        model: a model from ``vertebral_fracture.models.build_model``; each input holds
            ``model.in_channels`` slices (odd: the slice and its neighbours as context).
        stack: the slices, (N, H, W) with H and W multiples of 32.
        batch_size: slices per forward pass.
        device: where to run.
        progress: show progress over batches (a bar on a terminal, log lines otherwise).

    Returns:
        (N, H, W) float32 probabilities in [0, 1].
    """
    model.eval().to(device, memory_format=MEMORY_FORMAT)
    n, in_channels = len(stack.images), model.in_channels
    out = np.empty(stack.images.shape, dtype=np.float32)
    starts = range(0, n, batch_size)
    for start in Progress(
        starts, desc=f"{stack.case_id} {stack.view}", unit="batch", enabled=progress
    ):
        indices = range(start, min(start + batch_size, n))
        batch = np.stack([stack.images[neighbour_indices(i, n, in_channels)] for i in indices])
        x = torch.from_numpy(batch.astype(np.float32)).to(device, memory_format=MEMORY_FORMAT)
        out[start : start + len(indices)] = (
            model.fracture_probability(x)[:, 0].float().cpu().numpy()
        )
    return out


def predict_volume(model: nn.Module, stack: SliceStack, **kwargs) -> np.ndarray:
    """(X, Y, Z) float32 probabilities on the stack's canonical grid (see ``predict_slices``)."""
    return assemble_volume(predict_slices(model, stack, **kwargs), stack)


def predict_on_scan_grid(
    model: nn.Module, stack: SliceStack, record: dict, **kwargs
) -> nib.Nifti1Image:
    """Probabilities of one view resampled onto the input scan's own grid (``record``'s affine
    and shape, as in the case index): float32, overlays the scan in 3D Slicer or ITK-SNAP.
    Keyword arguments go to ``predict_slices``."""
    volume = predict_volume(model, stack, **kwargs)
    return to_native(volume, stack.affine, record["affine"], record["shape"])


@torch.inference_mode()
def attention_maps(
    model: nn.Module, stack: SliceStack, index: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Where an attention-gated model looks on one slice.

    Args:
        model: a model that records ``attention_maps`` in its forward pass (the multi-task model).
        stack: the slices; ``index`` selects one.

    Returns:
        The (H, W) slice and its gates' coefficients, coarse to fine, each (h_i, w_i) in [0, 1].
    """
    model.eval()
    channels = stack.images[neighbour_indices(index, len(stack.images), model.in_channels)]
    model(torch.from_numpy(channels[None].astype(np.float32)))
    alphas = [alpha[0, 0].float().cpu().numpy() for alpha in model.attention_maps]
    return stack.images[index].astype(np.float32), alphas
