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
        span the world bounding box of the scan's voxel centres.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shape[:3]])), dtype=float)
    world = nib.affines.apply_affine(affine, corners)
    low, high = world.min(axis=0), world.max(axis=0)
    canonical_shape = tuple(int(n) for n in np.floor((high - low) / spacing + 1e-6).astype(int) + 1)
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
    fraction and thresholded at 0.5, so it neither smears into a blur nor loses volume
    systematically, as nearest-neighbour sampling does at anisotropic spacing.
    """
    affine, shape = canonical_grid(ct.affine, ct.shape, spacing_mm)
    hu = resample(np.asanyarray(ct.dataobj), ct.affine, affine, shape, order=1, fill_value=AIR_HU)
    canonical_ct = _image(np.round(hu).astype(np.int16), affine)
    if mask is None:
        return canonical_ct, None
    fraction = resample(np.asanyarray(mask.dataobj) > 0, mask.affine, affine, shape, order=1)
    return canonical_ct, _image((fraction >= 0.5).astype(np.uint8), affine)


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
