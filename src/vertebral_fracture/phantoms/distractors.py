"""Benign findings that resemble fractures but never enter the fracture mask.

Each distractor yields (region, tissue, HU) paint operations on a vertebra crop given local
coordinates (mm) and the crop's bone mask; regions are bool arrays of the crop shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Tissue, VertebraGeom
from .geometry import Array, capsule_sdf

LOCAL_KINDS = ("schmorl_node", "basivertebral_vein", "osteophyte")
Paint = tuple[Array, Tissue, float]


@dataclass(frozen=True)
class SchmorlNode:
    """Endplate indentation filled with disc material, rimmed by sclerotic bone."""

    center: Array  # (3,) local mm on an endplate
    radius: float
    rim_mm: float
    rim_hu: float
    node_hu: float
    kind: str = "schmorl_node"

    def paints(self, u: Array, v: Array, w: Array, g: VertebraGeom, bone: Array) -> list[Paint]:
        r = capsule_sdf(u, v, w, self.center, self.center, self.radius)
        return [
            (bone & (r > -self.rim_mm), Tissue.SCHMORL_NODE, self.rim_hu),
            (bone & (r > 0), Tissue.SCHMORL_NODE, self.node_hu),
        ]


@dataclass(frozen=True)
class BasivertebralVein:
    """Y-shaped low-density venous channel entering the posterior body centre."""

    segments: tuple[tuple[Array, Array], ...]
    radius: float
    hu: float
    kind: str = "basivertebral_vein"

    def paints(self, u: Array, v: Array, w: Array, g: VertebraGeom, bone: Array) -> list[Paint]:
        tube = np.max([capsule_sdf(u, v, w, a, b, self.radius) for a, b in self.segments], axis=0)
        return [(bone & (tube > 0), Tissue.VEIN_CHANNEL, self.hu)]


@dataclass(frozen=True)
class Osteophyte:
    """Bony spur growing from the body margin next to an endplate towards the disc."""

    base: Array
    tip: Array
    radius: float
    hu: float
    kind: str = "osteophyte"

    def paints(self, u: Array, v: Array, w: Array, g: VertebraGeom, bone: Array) -> list[Paint]:
        spur = capsule_sdf(u, v, w, self.base, self.tip, self.radius, 0.8)
        return [(~bone & (spur > 0), Tissue.OSTEOPHYTE, self.hu)]


Distractor = SchmorlNode | BasivertebralVein | Osteophyte


def sample_distractor(
    kind: str, rng: np.random.Generator, g: VertebraGeom, voxel_mm: float, contrast: bool
) -> Distractor:
    """Random distractor of ``kind`` for body geometry ``g``; sizes stay >= ~1 voxel."""
    side = 1 if rng.random() < 0.5 else -1
    if kind == "schmorl_node":
        u0, v0 = rng.uniform(-0.4, 0.4) * g.rx, rng.uniform(-0.4, 0.3) * g.ry
        rn2 = (u0 / g.rx) ** 2 + (v0 / g.ry) ** 2
        w0 = side * (g.h / 2 - g.cav * (1 - rn2))
        return SchmorlNode(
            center=np.array([u0, v0, w0]),
            radius=max(rng.uniform(0.1, 0.18) * g.rx, 1.5 * voxel_mm),
            rim_mm=max(rng.uniform(0.8, 1.5), voxel_mm),
            rim_hu=rng.uniform(350, 550),
            node_hu=rng.uniform(75, 110),
        )
    if kind == "basivertebral_vein":
        w0 = rng.uniform(-0.1, 0.1) * g.h
        entry = np.array([0.0, -1.1 * g.ry, w0])
        fork = np.array([rng.normal(0, 0.05) * g.rx, -0.35 * g.ry, w0])
        spread = rng.uniform(0.2, 0.35) * g.rx
        ends = [
            fork + np.array([s * spread, 0.3 * g.ry, rng.normal(0, 0.05) * g.h]) for s in (-1, 1)
        ]
        return BasivertebralVein(
            segments=((entry, fork), (fork, ends[0]), (fork, ends[1])),
            radius=max(rng.uniform(0.05, 0.08) * g.ry, 0.6 * voxel_mm),
            hu=rng.uniform(110, 170) if contrast else rng.uniform(25, 60),
        )
    if kind == "osteophyte":
        phi = rng.uniform(-1.6, 1.6)
        outward = np.array([np.sin(phi), np.cos(phi), 0.0])
        base = np.array([g.rx * np.sin(phi), g.ry * np.cos(phi), side * (g.h / 2 - 1.0)]) * 0.95
        length = rng.uniform(0.15, 0.3) * g.ry
        tip = base + length * (outward + np.array([0.0, 0.0, side * rng.uniform(0.3, 0.9)]))
        return Osteophyte(
            base, tip, max(rng.uniform(0.06, 0.1) * g.ry, voxel_mm), rng.uniform(450, 850)
        )
    raise ValueError(f"unknown distractor kind {kind!r}")
