"""Fractures planted into a real vertebra: a real-bone test of models trained on phantoms.

A compression fracture is planted by squeezing the vertebral body's columns: in each
(x, y) column of the body the bone between the lower endplate and the collapsed upper one
(or the lower one, or both) is resampled from the intact column, so the real cortex, marrow
texture and noise move with it; the disc next to a collapsed endplate follows it into the
space the body gave up. The mask follows the phantoms' convention (``phantoms/generator.py``):
the band of compacted bone beneath each collapsed endplate, where the endplate dropped by more
than a fifth of its largest drop, made denser by compaction.

Arrays are canonical RAS (x, y, z): anterior is +y, superior +z.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from vertebral_fracture.phantoms.fractures import (
    COMPRESSION_SHAPES,
    MIN_DROP_SHARE,
    collapse_share,
)
from vertebral_fracture.phantoms.generator import store

#: Share of the body's height, below a collapsed endplate, that counts as the fracture band.
BAND_FRACTION = 0.15
#: HU added to the fracture band at the largest drop: trabeculae compacted into each other.
COMPACTION_HU = 150.0
#: Wedge: the collapse starts this far (share of the body's depth, from the back) and grows
#: linearly to the anterior wall; the posterior wall stays intact.
WEDGE_HINGE = 0.35


def plant_compression(
    hu: np.ndarray,
    body: np.ndarray,
    *,
    height_loss: float,
    shape: str = "wedge",
) -> tuple[np.ndarray, np.ndarray]:
    """Collapse the vertebral body ``body`` of a real scan.

    Args:
        hu: (X, Y, Z) canonical RAS CT in HU.
        body: (X, Y, Z) bool mask of one vertebral body (not its posterior elements).
        height_loss: largest loss of the body's height (0-1; Genant grade 1 from 0.2,
            grade 2 from 0.25, grade 3 from 0.4): at the anterior wall for a wedge, at the
            centre for a biconcave collapse (shared by both endplates), everywhere for a crush.
        shape: "wedge" (upper endplate, anterior), "biconcave" (both endplates, central) or
            "crush" (upper endplate, nearly even).

    Returns:
        The CT with the fracture (int16 HU, same shape) and its uint8 fracture mask.
    """
    if shape not in COMPRESSION_SHAPES:
        raise ValueError(f"unknown compression shape {shape!r}; choose from {COMPRESSION_SHAPES}")
    if not 0 < height_loss < 1:
        raise ValueError(f"height_loss must lie in (0, 1), got {height_loss}")
    if body.shape != hu.shape or not body.any():
        raise ValueError(f"body mask {body.shape} must be non-empty and match the CT {hu.shape}")
    columns = body.any(axis=2)
    z = np.arange(hu.shape[2])
    bottom = np.where(columns, np.argmax(body, axis=2), 0)
    top = np.where(columns, hu.shape[2] - 1 - np.argmax(body[:, :, ::-1], axis=2), 0)
    upper, lower = _drops(columns, height_loss, shape)  # shares of each column's height
    peak = max(upper.max(), lower.max())

    out = hu.astype(np.float32).copy()
    mask = np.zeros(hu.shape, dtype=np.uint8)
    for x, y in zip(*np.nonzero(columns), strict=True):
        b, t = bottom[x, y], top[x, y]
        height = t - b + 1.0
        drop_up, drop_low = upper[x, y] * height, lower[x, y] * height
        if drop_up + drop_low < 0.5:  # less than half a voxel: the column stays intact
            continue
        column = hu[x, y].astype(np.float32)
        new_b, new_t = b + drop_low, t - drop_up
        inside = (z >= new_b) & (z <= new_t)
        # the squeezed column samples the whole intact body, endplates included
        source = b + (z[inside] - new_b) * (t - b) / max(new_t - new_b, 1.0)
        out[x, y, inside] = np.interp(source, z, column)
        # the disc next to a collapsed endplate follows it into the body (its texture kept)
        above, below = (z > new_t) & (z <= t), (z < new_b) & (z >= b)
        out[x, y, above] = np.interp(z[above] + drop_up, z, column)
        out[x, y, below] = np.interp(z[below] - drop_low, z, column)
        for share, near in ((upper[x, y], new_t - z), (lower[x, y], z - new_b)):
            if share > MIN_DROP_SHARE * peak:
                fractured = inside & (near < BAND_FRACTION * height)
                out[x, y, fractured] += COMPACTION_HU * share / peak
                mask[x, y, fractured] = 1
    limits = np.iinfo(np.int16)  # the scan's own HU range stays (no clipping to -1024)
    return np.clip(np.rint(out), limits.min, limits.max).astype(np.int16), mask


def _drops(columns: np.ndarray, loss: float, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) drops of the upper and lower endplates, as shares of each column's height, for
    a largest height loss ``loss``."""
    x, y = np.ogrid[: columns.shape[0], : columns.shape[1]]
    xs, ys = np.nonzero(columns)
    cx, cy = xs.mean(), ys.mean()
    rx = max((xs.max() - xs.min()) / 2, 1.0)
    ry = max((ys.max() - ys.min()) / 2, 1.0)
    depth = (y - ys.min()) / max(ys.max() - ys.min(), 1)  # 0 posterior wall, 1 anterior wall
    wedge = np.clip((depth - WEDGE_HINGE) / (1 - WEDGE_HINGE), 0, 1)
    central = np.clip(1 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2, 0, 1)
    share = np.where(columns, loss * collapse_share(shape, wedge, central), 0.0)
    return (share, share) if shape == "biconcave" else (share, np.zeros(columns.shape))


def planted_cases(
    scan: Path,
    vertebrae: Path,
    subregions: Path,
    *,
    vertebra: int,
    body_subregions: Sequence[int],
    plants: Sequence[Mapping[str, Any]],
) -> dict[str, nib.Nifti1Image]:
    """A test set from one real scan: the scan intact (an empty mask: its false positives
    count) and once per plant, each case as ``<name>_ct`` and ``<name>_fracture`` images
    stored like the scan (orientation, affine).

    Args:
        scan: the real CT (NIfTI, any orientation, HU).
        vertebrae, subregions: its vertebra and vertebra-subregion label maps (same grid;
            VerSe / TPTBox ids).
        vertebra: the label of the vertebra to fracture (e.g. 22 = L3).
        body_subregions: the subregion labels of its body (TPTBox: 49 corpus border, 50 corpus).
        plants: ``plant_compression`` keyword arguments, e.g. ``[{"shape": "wedge",
            "height_loss": 0.3}]``; case names are ``<shape>_<height loss in %>``.
    """
    ct = nib.load(scan)
    canonical = nib.as_closest_canonical(ct)
    hu = np.asanyarray(canonical.dataobj)
    labels = [
        np.asanyarray(nib.as_closest_canonical(nib.load(p)).dataobj)
        for p in (vertebrae, subregions)
    ]
    if any(lab.shape != hu.shape for lab in labels):
        raise ValueError(f"{vertebrae} and {subregions} must share the grid of {scan}")
    body = (labels[0] == vertebra) & np.isin(labels[1], body_subregions)
    orientation = "".join(nib.aff2axcodes(ct.affine))
    cases = {"intact": (hu.astype(np.int16), np.zeros(hu.shape, np.uint8))}
    for plant in plants:
        name = f"{plant['shape']}_{round(100 * plant['height_loss'])}"
        cases[name] = plant_compression(hu, body, **plant)
    images = {}
    for name, (image, mask) in cases.items():
        images[f"{name}_ct"] = store(image, canonical.affine, orientation)
        images[f"{name}_fracture"] = store(mask, canonical.affine, orientation)
    return images
