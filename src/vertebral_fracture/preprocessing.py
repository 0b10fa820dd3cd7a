"""Geometry and intensity preprocessing: any NIfTI grid to a canonical RAS grid and back.

Both directions go through world coordinates (the affines), so every orientation
convention (RAS, LPS, permuted or oblique axes) and every spacing is handled by one
resampling routine, and a probability volume computed on the canonical grid lands on the
input scan's own voxels.
"""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
from scipy import ndimage

from vertebral_fracture.metrics import LESION_CONNECTIVITY

AIR_HU = -1024.0


def canonical_grid(
    affine: np.ndarray, shape: tuple[int, ...], spacing_mm: tuple[float, float, float]
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """RAS-aligned grid with ``spacing_mm`` that covers a scan's field of view.

    Args:
        affine: (4, 4) voxel-to-world (RAS mm) matrix of the scan.
        shape: the scan's voxel shape (3 values).
        spacing_mm: target voxel size along R, A, S in mm.

    Returns:
        ``(canonical_affine, canonical_shape)``: a diagonal affine (positive spacing, so array
        axes run left to right, posterior to anterior, inferior to superior) whose voxel centres
        span the world bounding box of the scan's voxel centres: the last centre lies at or
        past the scan's last one, so every native voxel has canonical neighbours to
        interpolate from on the way back (``to_native``).
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shape[:3]])), dtype=float)
    world = nib.affines.apply_affine(affine, corners)
    low, high = world.min(axis=0), world.max(axis=0)
    canonical_shape = tuple(int(n) for n in np.ceil((high - low) / spacing - 1e-6).astype(int) + 1)
    canonical_affine = np.diag([*spacing, 1.0])
    canonical_affine[:3, 3] = low
    return canonical_affine, canonical_shape  # type: ignore[return-value]


def resample(
    data: np.ndarray,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    *,
    order: int = 1,
    fill_value: float = 0.0,
) -> np.ndarray:
    """Sample ``data`` (on ``source_affine``) at the voxel centres of a target grid.

    Args:
        data: (X, Y, Z) array on the source grid.
        source_affine, target_affine: (4, 4) voxel-to-world matrices.
        target_shape: voxel shape of the output.
        order: spline order (0 nearest, 1 linear).
        fill_value: value for target voxels outside the source field of view.

    Returns:
        (target_shape) float32 array.
    """
    # target voxel -> world -> source voxel, as one affine map (no coordinate arrays in memory)
    target_to_source = np.linalg.inv(source_affine) @ target_affine
    return ndimage.affine_transform(
        np.asarray(data, dtype=np.float32),
        target_to_source[:3, :3],
        offset=target_to_source[:3, 3],
        output_shape=tuple(target_shape),
        output=np.float32,
        order=order,
        mode="constant",
        cval=fill_value,
        prefilter=False,
    )


def to_canonical(
    ct: nib.Nifti1Image, mask: nib.Nifti1Image | None, spacing_mm: tuple[float, float, float]
) -> tuple[nib.Nifti1Image, nib.Nifti1Image | None]:
    """Reorient a CT (and its mask) to RAS and resample to ``spacing_mm``.

    The CT is interpolated linearly (int16 HU). The mask is interpolated linearly as a
    fraction and thresholded (:func:`mask_from_fraction`), so it neither smears into a blur
    nor loses volume systematically, as nearest-neighbour sampling does at anisotropic
    spacing, and a thin break narrower than the new voxels is kept.
    """
    affine, shape = canonical_grid(ct.affine, ct.shape, spacing_mm)
    hu = resample(np.asanyarray(ct.dataobj), ct.affine, affine, shape, order=1, fill_value=AIR_HU)
    canonical_ct = _image(np.round(hu).astype(np.int16), affine)
    if mask is None:
        return canonical_ct, None
    covered = footprint_average(np.asanyarray(mask.dataobj) > 0, mask.affine, spacing_mm)
    fraction = resample(covered, mask.affine, affine, shape, order=1)
    return canonical_ct, _image(mask_from_fraction(fraction), affine)


def footprint_average(
    mask: np.ndarray, affine: np.ndarray, spacing_mm: tuple[float, float, float]
) -> np.ndarray:
    """The share of each native voxel's neighbourhood, one target voxel wide, that is mask.

    Sampling a binary mask at coarser voxel centres only sees the native voxels it lands on,
    so a break one native voxel thin between two centres vanishes; averaging over the
    target voxel's footprint first (a box filter as wide as the spacing ratio along each
    native axis) gives every target voxel the fraction of it the mask covers.
    """
    native_mm = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    world_axis = np.abs(np.asarray(affine)[:3, :3]).argmax(axis=0)  # each native axis's
    size = np.maximum(1, np.round(np.asarray(spacing_mm)[world_axis] / native_mm)).astype(int)
    data = mask.astype(np.float32)
    # an even size sits half a native voxel off centre, so a lesion grows by a target voxel on
    # one side; a centred box lost on the development set (benchmarks/README.md, 2026-12-06)
    return ndimage.uniform_filter(data, size=size, mode="constant") if (size > 1).any() else data


def mask_from_fraction(fraction: np.ndarray) -> np.ndarray:
    """Binary mask from a resampled mask fraction: ``>= 0.5``, and thin lesions kept.

    A 1-2 voxel fracture line resampled to coarser voxels covers none of them by half and
    would vanish; every lesion (26-connected component of ``fraction > 0``) with no voxel
    at 0.5 keeps its best-covered voxels instead (at least half its highest fraction).

    Args:
        fraction: (X, Y, Z) float mask fraction in [0, 1].

    Returns:
        (X, Y, Z) uint8 mask.
    """
    mask = fraction >= 0.5
    labels, n = ndimage.label(fraction > 1e-3, structure=LESION_CONNECTIVITY)
    if n:
        peak = ndimage.maximum(fraction, labels, np.arange(n + 1))
        peak[0] = np.inf  # background never joins
        thin = peak < 0.5
        mask |= thin[labels] & (fraction >= 0.5 * peak[labels])
    return mask.astype(np.uint8)


def to_native(
    volume: np.ndarray,
    canonical_affine: np.ndarray,
    native_affine: np.ndarray,
    native_shape: tuple[int, int, int],
) -> nib.Nifti1Image:
    """Resample a canonical-grid probability volume onto a native scan's voxel grid.

    Returns a float32 image with the native scan's shape and affine, so it overlays the
    original scan voxel for voxel in 3D Slicer or ITK-SNAP.
    """
    native_affine = np.asarray(native_affine, dtype=np.float64)
    data = resample(volume, canonical_affine, native_affine, tuple(native_shape), order=1)
    np.clip(data, 0.0, 1.0, out=data)  # guards float rounding of interpolated [0, 1] values
    return _image(data, native_affine)


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map Hounsfield units to [0, 1] through a display window (float32)."""
    low = level - width / 2.0
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(width)
    return np.clip(out, 0.0, 1.0, out=out)


def _image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image
