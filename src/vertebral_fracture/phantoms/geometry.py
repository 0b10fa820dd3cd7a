"""Local coordinate boxes and signed-distance primitives (all lengths in mm).

Signed distances are positive inside a shape and approximately equal to the distance to its
surface in mm, which lets a shell of given thickness be cut as ``0 < d < t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray


def frame_from_axis(axis: Array, axial_rotation_rad: float) -> Array:
    """Rotation (3, 3) whose columns are the local (lateral, anterior, axial) unit vectors.

    ``axis`` (3,) is the local cranial direction in RAS world space; lateral starts from world
    +x projected off the axis, anterior completes a right-handed frame, then both spin by
    ``axial_rotation_rad`` about the axis (vertebral rotation in scoliosis).
    """
    e3 = axis / np.linalg.norm(axis)
    e1 = np.array([1.0, 0.0, 0.0]) - e3[0] * e3
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(e3, e1)
    c, s = np.cos(axial_rotation_rad), np.sin(axial_rotation_rad)
    return np.stack([c * e1 + s * e2, -s * e1 + c * e2, e3], axis=1)


@dataclass
class Box:
    """Axis-aligned voxel crop of the canonical volume with local coordinates of its voxels.

    ``slices`` index the (X, Y, Z) volume; ``u, v, w`` (float32, crop shape) are the local
    lateral / anterior / axial mm coordinates of voxel centres in the frame (``center``, ``rot``).
    """

    slices: tuple[slice, slice, slice]
    u: Array
    v: Array
    w: Array
    center: Array
    rot: Array
    origin: Array
    spacing: Array

    def in_frame(self, center: Array, rot: Array) -> tuple[Array, Array, Array]:
        """Local mm coordinates (crop shape each) of the crop's voxels in another frame
        (``center`` (3,) world mm, ``rot`` (3, 3) columns = its local axes)."""
        turn = (rot.T @ self.rot).astype(np.float32)
        shift = rot.T @ (self.center - center)
        return tuple(  # type: ignore[return-value]
            shift[m] + turn[m, 0] * self.u + turn[m, 1] * self.v + turn[m, 2] * self.w
            for m in range(3)
        )

    def sub(self, local_pts: Array, margin: float) -> tuple[slice, slice, slice] | None:
        """Crop-relative slices covering local points (N, 3) padded by ``margin`` mm."""
        world = self.center + local_pts @ self.rot.T
        lo = np.floor((world.min(0) - margin - self.origin) / self.spacing).astype(int)
        hi = np.ceil((world.max(0) + margin - self.origin) / self.spacing).astype(int) + 1
        out = []
        for ax in range(3):
            start, stop = self.slices[ax].start, self.slices[ax].stop
            a, b = max(lo[ax], start), min(hi[ax], stop)
            if a >= b:
                return None
            out.append(slice(a - start, b - start))
        return tuple(out)


def cuboid_corners(lo: Array, hi: Array) -> Array:
    """The 8 corners (8, 3) of the axis-aligned cuboid [lo, hi]: in a rotated frame only all of
    them bound it."""
    return np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )


def make_box(
    shape: tuple[int, int, int],
    origin: Array,
    spacing: Array,
    center: Array,
    rot: Array,
    lo: Array,
    hi: Array,
) -> Box | None:
    """Crop of a volume of ``shape`` covering the local cuboid [lo, hi] (mm) of a frame.

    Returns ``None`` when the cuboid lies outside the volume.
    """
    world = center + cuboid_corners(lo, hi) @ rot.T
    i0 = np.maximum(np.floor((world.min(0) - origin) / spacing).astype(int), 0)
    i1 = np.minimum(np.ceil((world.max(0) - origin) / spacing).astype(int) + 1, shape)
    if np.any(i1 <= i0):
        return None
    axes = [
        (origin[a] + np.arange(i0[a], i1[a]) * spacing[a] - center[a]).astype(np.float32)
        for a in range(3)
    ]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    r = rot.astype(np.float32)
    u, v, w = (r[0, k] * x + r[1, k] * y + r[2, k] * z for k in range(3))
    slices = tuple(slice(int(a), int(b)) for a, b in zip(i0, i1, strict=True))
    return Box(slices, u, v, w, center, rot, origin, spacing)


def ellipse_sdf(x: Array, y: Array, rx: Array | float, ry: Array | float) -> tuple[Array, Array]:
    """Radial signed distance (mm) to an ellipse of semi-axes rx, ry, and normalised radius.

    The distance is measured along the ray from the centre, exact on circles and close on
    mild ellipses.
    """
    rn = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    return (1.0 - rn) * np.sqrt(x * x + y * y) / np.maximum(rn, 1e-3), rn


def capsule_sdf(
    u: Array, v: Array, w: Array, a: Array, b: Array, radius: float, aspect: float = 1.0
) -> Array:
    """Signed distance to a capsule from ``a`` to ``b`` (local mm) of lateral radius ``radius``.

    ``aspect`` > 1 stretches the cross-section along the local axial direction (plate-like
    laminae and spinous processes are taller than wide).
    """
    scale = np.array([1.0, 1.0, 1.0 / aspect])
    a_s, ab = a * scale, (b - a) * scale
    pu, pv, pw = u - a_s[0], v - a_s[1], w * scale[2] - a_s[2]
    t = np.clip((pu * ab[0] + pv * ab[1] + pw * ab[2]) / max(ab @ ab, 1e-9), 0.0, 1.0)
    return radius - np.sqrt((pu - t * ab[0]) ** 2 + (pv - t * ab[1]) ** 2 + (pw - t * ab[2]) ** 2)
