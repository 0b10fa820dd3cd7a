"""3D multi-view fusion of per-view fracture probability volumes.

Each view (axial, coronal, sagittal, ...) yields a probability volume of the same
shape, e.g. ``(X, Y, Z)`` float32 in [0, 1], after its 2D slice predictions are
stacked back along the view's axis. Fusion combines them voxel-wise.

The proposed method is ``product``: a soft logical AND, so a voxel stays likely only
when every view agrees, which removes artifacts that appear in a single view (and
the slab/cross artifacts of slice-level class maps). ``mean`` is the thesis
baseline; ``geometric_mean``, ``minimum`` and ``maximum`` are ablations.

The product's evidence is then pooled over a few neighbouring voxels in the log domain
(``smooth_log_scores``): each view predicts its slices one by one, so across its slices a
score jumps, and a local geometric mean keeps a region all views agree on while a voxel that
one slice lifted falls back.

Fusion is memory-bound: every method allocates exactly one float32 output and
accumulates into it with ``out=`` so no float64 promotion or temporary volume is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

FusionFn = Callable[[Sequence[np.ndarray]], np.ndarray]


def _validated(volumes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Check there is at least one volume and all shapes agree; return them as arrays."""
    arrays = [np.asarray(v) for v in volumes]
    if not arrays:
        raise ValueError("fusion needs at least one probability volume, got none")
    shapes = [a.shape for a in arrays]
    if len(set(shapes)) != 1:
        raise ValueError(f"all probability volumes must have the same shape, got {shapes}")
    return arrays


def _accumulate(volumes: Sequence[np.ndarray], ufunc: np.ufunc) -> np.ndarray:
    """Fold ``ufunc`` over the volumes into one new float32 array.

    The first binary operation writes straight into the output (no initial copy when
    there are >= 2 views); later views are folded in place. Non-float32 inputs are
    cast inside the ufunc's buffered loop, never materialised as whole float64 volumes.
    """
    arrays = _validated(volumes)
    out = np.empty(arrays[0].shape, dtype=np.float32)
    if len(arrays) == 1:
        np.copyto(out, arrays[0], casting="same_kind")
        return out
    ufunc(arrays[0], arrays[1], out=out, dtype=np.float32, casting="same_kind")
    for volume in arrays[2:]:
        ufunc(out, volume, out=out, dtype=np.float32, casting="same_kind")
    return out


def fuse_product(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Voxel-wise product of N same-shape volumes -> float32 volume of that shape.

    A zero (or near-zero) in any view vetoes the voxel. Note the values shrink as
    p**N: with three views, real scores reach ~1e-11, which downstream metrics must
    resolve (see ``metrics.ScoreHistogram``).
    """
    return _accumulate(volumes, np.multiply)


def fuse_mean(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Voxel-wise arithmetic mean of N same-shape volumes -> float32 volume (thesis baseline)."""
    out = _accumulate(volumes, np.add)
    # A Python float is a "weak" scalar under NEP 50, so this stays a float32 in-place scale.
    np.multiply(out, 1.0 / len(volumes), out=out)
    return out


def fuse_geometric_mean(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Voxel-wise geometric mean ``(prod p_i) ** (1/N)`` -> float32 volume.

    Keeps the veto of ``product`` while staying on the probability scale of one view.
    """
    out = _accumulate(volumes, np.multiply)
    n = len(volumes)
    if n == 3:
        np.cbrt(out, out=out)  # the common 3-view case: cbrt is faster than a general power
    elif n > 1:
        np.power(out, 1.0 / n, out=out)
    return out


def fuse_minimum(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Voxel-wise minimum over N same-shape volumes -> float32 volume (hard logical AND)."""
    return _accumulate(volumes, np.minimum)


def fuse_maximum(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Voxel-wise maximum over N same-shape volumes -> float32 volume (logical OR)."""
    return _accumulate(volumes, np.maximum)


FUSION_METHODS: dict[str, FusionFn] = {
    "product": fuse_product,
    "mean": fuse_mean,
    "geometric_mean": fuse_geometric_mean,
    "minimum": fuse_minimum,
    "maximum": fuse_maximum,
}


#: Fusions that add the views' log scores, so smoothing their log is smoothing evidence.
LOG_DOMAIN_METHODS = ("product", "geometric_mean")
#: Scores below this count as this in the log domain: a zero (no window reached the voxel)
#: would be -inf and veto its whole neighbourhood; 1e-12 is three views at 1e-4 each.
LOG_SCORE_FLOOR = 1e-12


def smooth_log_scores(volume: np.ndarray, sigma_voxels: Sequence[float]) -> np.ndarray:
    """Local geometric mean of a score volume: a Gaussian over its log scores.

    Args:
        volume: ``(X, Y, Z)`` scores in [0, 1], e.g. a product fusion.
        sigma_voxels: the Gaussian's standard deviation per axis, in voxels (a length in mm
            divided by the volume's voxel size, so scans of any spacing get the same extent).

    Returns:
        A new float32 volume of ``volume``'s shape in [``LOG_SCORE_FLOOR``, 1]. For the
        product of views this equals the product of each view's smoothed log score.
    """
    if len(sigma_voxels) != np.ndim(volume) or any(s < 0 for s in sigma_voxels):
        raise ValueError(
            f"sigma_voxels must hold one non-negative value per axis of the "
            f"{np.ndim(volume)}-D volume, got {tuple(sigma_voxels)}"
        )
    log_scores = np.maximum(volume, LOG_SCORE_FLOOR, dtype=np.float32)
    np.log(log_scores, out=log_scores)
    smoothed = ndimage.gaussian_filter(log_scores, sigma=tuple(sigma_voxels), output=np.float32)
    return np.exp(smoothed, out=smoothed)


def pool_log_evidence(
    volume: np.ndarray, method: str, sigma_mm: float, voxel_size_mm: Sequence[float]
) -> np.ndarray:
    """A fused volume with its evidence pooled over ``sigma_mm`` (``smooth_log_scores``) when
    ``method`` fuses in the log domain (``LOG_DOMAIN_METHODS``) and ``sigma_mm > 0``; else
    ``volume`` itself. ``voxel_size_mm``: the volume's voxel size per axis, which turns the
    millimetres into voxels, so scans of any spacing get the same extent."""
    if method not in LOG_DOMAIN_METHODS or sigma_mm <= 0:
        return volume
    return smooth_log_scores(volume, sigma_mm / np.asarray(voxel_size_mm, dtype=float))


def fuse(volumes: Sequence[np.ndarray], method: str = "product") -> np.ndarray:
    """Fuse per-view probability volumes with a named method.

    Args:
        volumes: N >= 1 arrays of identical shape (typically ``(X, Y, Z)`` float32 in
            [0, 1]), one per view; the view list is the caller's choice.
        method: a key of ``FUSION_METHODS``.

    Returns:
        A new float32 array of the common shape; inputs are not modified.

    Raises:
        ValueError: unknown method, no volumes, or mismatched shapes.
    """
    try:
        fn = FUSION_METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown fusion method {method!r}; choose one of {sorted(FUSION_METHODS)}"
        ) from None
    return fn(volumes)


def binarize(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Label map of ``prob >= threshold``: uint8 array of ``prob``'s shape, values {0, 1}.

    ``>=`` matches the convention of the metrics (a score equal to the threshold is
    predicted positive), so a threshold read off a precision-recall curve reproduces
    its counts exactly.
    """
    # Viewing the bool result as uint8 avoids a second full-volume allocation.
    return np.greater_equal(prob, threshold).view(np.uint8)
