"""Vertebral body fractures as deformations of the body's signed distance field.

Each fracture evaluates the (deformed) body on local coordinate arrays (mm) and reports which
voxels become fracture gaps, sclerotic bone and fracture mask. All returned arrays share the
shape of the input coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation

from vertebral_fracture.vertebrae import GRADE_LOSS_MIN

from .anatomy import VertebraGeom, body_sdf
from .geometry import Array

KINDS = ("compression", "burst", "cortical_line")
KIND_PROBS = (0.45, 0.25, 0.30)


@dataclass
class BodyEval:
    """Vertebral body evaluated on a crop: signed distance, endplate distance and fracture parts."""

    d: Array  # signed distance (mm), > 0 inside bone
    end: Array  # distance to the nearer endplate (mm)
    gap: Array  # bool, fracture gap (hematoma HU, not bone)
    sclerotic: Array  # bool, compacted bone
    mask: Array  # bool, fracture region


def intact_body(u: Array, v: Array, w: Array, g: VertebraGeom) -> BodyEval:
    """Unfractured body."""
    d, end = body_sdf(u, v, w, g)
    none = np.zeros(d.shape, bool)
    return BodyEval(d, end, none, none, none)


COMPRESSION_SHAPES = ("wedge", "biconcave", "crush")  # Genant's morphological types
COMPRESSION_SHAPE_PROBS = (0.5, 0.3, 0.2)
# Genant grades 1-3 (``vertebrae.GRADE_LOSS_MIN``): height loss 20-25 %, 25-40 %, 40-55 % here
MAX_HEIGHT_LOSS = 0.55
GRADE_HEIGHT_LOSS = tuple(zip(GRADE_LOSS_MIN, (*GRADE_LOSS_MIN[1:], MAX_HEIGHT_LOSS), strict=True))
GRADE_PROBS = (0.3, 0.45, 0.25)


#: Endplate points that dropped by less than this share of the largest drop are not fracture.
MIN_DROP_SHARE = 0.2


def collapse_share(shape: str, wedge: Array, central: Array) -> Array:
    """Share of a compression's largest height loss by which each endplate point drops.

    ``wedge`` rises from 0 at the hinge to 1 at the anterior wall, ``central`` from 0 at the
    rim to 1 at the centre (both in [0, 1], same shape). A biconcave collapse shares the loss
    between both endplates, deepest centrally; a crush lowers the endplate almost evenly.
    """
    if shape == "biconcave":
        return 0.5 * central
    if shape == "crush":
        return 0.8 + 0.2 * wedge
    return wedge


@dataclass(frozen=True)
class Compression:
    """Compression: collapse of an endplate with a sclerotic band of compacted bone beneath it.

    ``shape`` "wedge" collapses one endplate anteriorly (the posterior wall stays), "biconcave"
    depresses both endplates centrally, "crush" lowers one endplate almost evenly.
    """

    side: int  # +1 superior endplate, -1 inferior (biconcave: both)
    loss_mm: float  # largest height loss of the body
    hinge: float  # wedge: collapse starts at v = hinge * ry
    gamma: float
    band_mm: float
    ripple_mm: float
    ripple_phase: float
    shape: str = "wedge"
    kind: str = "compression"

    def _sides(self) -> tuple[int, ...]:
        return (1, -1) if self.shape == "biconcave" else (self.side,)

    def drop(self, u: Array, v: Array, g: VertebraGeom) -> Array:
        """Displacement (mm) of each collapsed endplate into the body."""
        wedge = np.clip((v - self.hinge * g.ry) / ((1 - self.hinge) * g.ry), 0, 1) ** self.gamma
        central = np.clip(1 - (u / g.rx) ** 2 - (v / g.ry) ** 2, 0, 1) ** self.gamma
        t = collapse_share(self.shape, wedge, central)
        ripple = self.ripple_mm * np.sin(2.1 * u / g.rx * np.pi + self.ripple_phase) * t
        return self.loss_mm * t + ripple

    def extension(self, side: int, g: VertebraGeom) -> float:
        """How far (mm) the adjacent disc must reach into the body through this endplate."""
        return self.loss_mm + self.ripple_mm if side in self._sides() else 0.0

    def evaluate(self, u: Array, v: Array, w: Array, g: VertebraGeom) -> BodyEval:
        drop = self.drop(u, v, g)
        sides = self._sides()
        top, bottom = (drop if 1 in sides else 0.0), (drop if -1 in sides else 0.0)
        d, end = body_sdf(u, v, w, g, top, bottom)
        # Distance below each collapsed endplate only (an intact endplate is pushed away).
        depths = [body_sdf(u, v, w, g, top, -g.h)[1]] if 1 in sides else []
        depths += [body_sdf(u, v, w, g, -g.h, bottom)[1]] if -1 in sides else []
        depth = np.minimum.reduce(depths)
        peak = self.loss_mm * (0.5 if self.shape == "biconcave" else 1.0)
        crushed = (d > 0) & (depth < self.band_mm) & (drop > MIN_DROP_SHARE * peak)
        return BodyEval(d, end, np.zeros(d.shape, bool), crushed, crushed)


@dataclass(frozen=True)
class Burst:
    """Burst: axial-load failure of the anterior and middle columns (Denis).

    The endplates cave in centrally (the superior one more) over a band of compacted bone,
    fracture lines split the body and the posterior-superior fragment is retropulsed into the
    canal by a few millimetres, so the posterior wall shows a step.
    """

    depression_mm: float
    band_mm: float
    frag_v: float  # fragment is posterior of v = frag_v * ry ...
    frag_w: float  # ... and cranial of w = frag_w * h
    frag_tilt: float
    shift: Array  # (3,) fragment displacement (mm), posterior = retropulsion
    planes: tuple[tuple[Array, Array], ...]  # (point, unit normal) of fracture lines
    gap_mm: float
    kind: str = "burst"

    def extension(self, side: int, g: VertebraGeom) -> float:
        return self.depression_mm if side > 0 else 0.4 * self.depression_mm

    def _in_fragment(self, u: Array, v: Array, w: Array, g: VertebraGeom) -> Array:
        return (v < self.frag_v * g.ry + self.frag_tilt * w) & (w > self.frag_w * g.h)

    def _depression(self, u: Array, v: Array, g: VertebraGeom) -> Array:
        return self.depression_mm * np.clip(1 - (u / g.rx) ** 2 - (v / g.ry) ** 2, 0, 1)

    def evaluate(self, u: Array, v: Array, w: Array, g: VertebraGeom) -> BodyEval:
        intact, _ = body_sdf(u, v, w, g)
        depression = self._depression(u, v, g)
        d_caved, end = body_sdf(u, v, w, g, depression, 0.4 * depression)
        d_main = np.where(self._in_fragment(u, v, w, g), -np.inf, d_caved)
        su, sv, sw = u - self.shift[0], v - self.shift[1], w - self.shift[2]
        d_frag, end_frag = body_sdf(su, sv, sw, g, self._depression(su, sv, g))
        d_frag = np.where(self._in_fragment(su, sv, sw, g), d_frag, -np.inf)
        line = np.zeros(u.shape, bool)
        for point, normal in self.planes:
            dist = (
                (u - point[0]) * normal[0] + (v - point[1]) * normal[1] + (w - point[2]) * normal[2]
            )
            line |= np.abs(dist) < self.gap_mm / 2
        line &= d_main > 0
        d = np.where(line, -np.inf, np.maximum(d_main, d_frag))
        # Hematoma fills the lines and the space the fragment left; disc fills the cave-in.
        gap = line | ((d_caved > 0) & (d <= 0))
        # Compacted bone beneath the caved-in superior endplate (as under a compression).
        depth = body_sdf(u, v, w, g, depression, -g.h)[1]
        compacted = (
            (d > 0) & (depth < self.band_mm) & (depression > MIN_DROP_SHARE * self.depression_mm)
        )
        mask = gap | (d_frag > 0) | compacted
        return BodyEval(d, np.where(d_frag > 0, end_frag, end), gap, compacted, mask)


@dataclass(frozen=True)
class CorticalLine:
    """Thin fracture line through the cortex with a step-off of one side."""

    point: Array  # (3,) local mm, on the body wall
    outward: Array  # (3,) unit radial direction at the point
    normal: Array  # (3,) unit normal of the fracture plane (perpendicular to ``outward``)
    length_mm: float
    gap_mm: float
    step_mm: float
    depth_mm: float
    kind: str = "cortical_line"

    def extension(self, side: int, g: VertebraGeom) -> float:
        return 0.0

    def evaluate(self, u: Array, v: Array, w: Array, g: VertebraGeom) -> BodyEval:
        du, dv, dw = u - self.point[0], v - self.point[1], w - self.point[2]
        r2 = du * du + dv * dv + dw * dw
        side = du * self.normal[0] + dv * self.normal[1] + dw * self.normal[2]
        # One side of the plane moves outward, fading with distance so the step stays local.
        push = np.where(side > 0, self.step_mm * np.exp(-r2 / (2 * self.length_mm**2)), 0.0)
        intact, _ = body_sdf(u, v, w, g)
        d, end = body_sdf(
            u - push * self.outward[0], v - push * self.outward[1], w - push * self.outward[2], g
        )
        line = (np.abs(side) < self.gap_mm / 2) & (r2 < self.length_mm**2)
        line &= (np.maximum(d, intact) > 0) & (np.maximum(d, intact) < self.depth_mm)
        d = np.where(line, -np.inf, d)
        mask = binary_dilation(line) & (np.maximum(d, intact) > -self.gap_mm)
        return BodyEval(d, end, line, np.zeros(d.shape, bool), mask)


Fracture = Compression | Burst | CorticalLine


def _unit(vec: Array) -> Array:
    return vec / np.linalg.norm(vec)


def sample_fracture(
    kind: str, rng: np.random.Generator, g: VertebraGeom, voxel_mm: float
) -> Fracture:
    """Random fracture of ``kind`` for a body of geometry ``g``; ``voxel_mm`` is the finest spacing.

    Gaps and bands are kept >= ~1 voxel so they survive partial-volume blur.
    """
    if kind == "compression":
        grade = int(rng.choice(len(GRADE_PROBS), p=GRADE_PROBS))
        return Compression(
            side=1 if rng.random() < 0.7 else -1,
            loss_mm=rng.uniform(*GRADE_HEIGHT_LOSS[grade]) * g.h,
            hinge=rng.uniform(-0.6, -0.1),
            gamma=rng.uniform(0.8, 1.6),
            band_mm=max(rng.uniform(0.1, 0.18) * g.h, 2.0 * voxel_mm),
            ripple_mm=rng.uniform(0.0, 0.05) * g.h,
            ripple_phase=rng.uniform(0, 2 * np.pi),
            shape=str(rng.choice(COMPRESSION_SHAPES, p=COMPRESSION_SHAPE_PROBS)),
        )
    if kind == "burst":
        planes = []
        for _ in range(int(rng.integers(1, 4))):
            point = np.array(
                [
                    rng.uniform(-0.4, 0.4) * g.rx,
                    rng.uniform(-0.3, 0.5) * g.ry,
                    rng.uniform(-0.2, 0.2) * g.h,
                ]
            )
            normal = _unit(np.append(rng.normal(size=2), rng.normal(0, 0.4)))
            planes.append((point, normal))
        # Retropulsion of a few mm (a quarter of the canal or more), never under 1.5 voxels.
        retro = max(rng.uniform(0.12, 0.3) * g.ry, 1.5 * voxel_mm)
        return Burst(
            depression_mm=rng.uniform(0.2, 0.4) * g.h,
            band_mm=max(rng.uniform(0.1, 0.18) * g.h, 2.0 * voxel_mm),
            frag_v=rng.uniform(-0.65, -0.35),
            frag_w=rng.uniform(-0.1, 0.15),
            frag_tilt=rng.uniform(-0.3, 0.3),
            shift=np.array([rng.normal(0, 0.3) * retro, -retro, rng.uniform(0, 0.3) * retro]),
            planes=tuple(planes),
            gap_mm=max(rng.uniform(0.8, 1.4) * voxel_mm, 0.8),
        )
    if kind == "cortical_line":
        phi = rng.uniform(-1.8, 1.8)  # angle from anterior, avoiding the posterior wall
        outward = np.array([np.sin(phi), np.cos(phi), 0.0])
        w0 = rng.uniform(-0.3, 0.3) * g.h
        point = np.array([g.rx * np.sin(phi), g.ry * np.cos(phi), w0]) * (1 - g.waist * 0.8)
        tangent = np.array([np.cos(phi), -np.sin(phi), 0.0])
        tilt = rng.uniform(-0.9, 0.9)
        return CorticalLine(
            point=point,
            outward=outward,
            normal=_unit(np.cos(tilt) * np.array([0.0, 0.0, 1.0]) + np.sin(tilt) * tangent),
            length_mm=rng.uniform(0.25, 0.45) * g.rx,
            gap_mm=max(rng.uniform(1.0, 1.6) * voxel_mm, 0.8),
            step_mm=rng.uniform(0.8, 1.5) * voxel_mm,
            depth_mm=rng.uniform(2.5, 4.0) * voxel_mm,
        )
    raise ValueError(f"unknown fracture kind {kind!r}")
