"""Spine anatomy of the phantom: tissue labels, vertebral geometry, spinal layout, soft tissue.

Conventions: world space is canonical RAS in mm (+x right, +y anterior, +z superior). Each
vertebra has local coordinates (u lateral, v anterior, w axial/cranial) centred on its body.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

from .geometry import Array, capsule_sdf, ellipse_sdf, frame_from_axis

if TYPE_CHECKING:
    from .config import PhantomAppearance


class Tissue(IntEnum):
    """Labels of the internal tissue map (uint8)."""

    AIR = 0
    FAT = 1
    SOFT = 2
    MUSCLE = 3
    VESSEL = 4
    CSF = 5
    CORD = 6
    DISC = 7
    TRABECULAR = 8
    CORTICAL = 9
    SCLEROTIC = 10
    FRACTURE_GAP = 11
    SCHMORL_NODE = 12
    VEIN_CHANNEL = 13
    OSTEOPHYTE = 14
    OSTEOPOROTIC_TRABECULAR = 15


BONE = (
    Tissue.TRABECULAR,
    Tissue.CORTICAL,
    Tissue.SCLEROTIC,
    Tissue.OSTEOPHYTE,
    Tissue.OSTEOPOROTIC_TRABECULAR,
)
LEVELS = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
BODY_MARGIN_MM = 6.0  # soft tissue kept in front of the vertebral bodies in a shallow field
OSTEOPOROTIC_HU = 110.0  # trabecular density below which a spine counts as osteoporotic
OSTEOPOROTIC_CORTEX = 0.65  # cortical thinning of osteoporotic bone (share of normal)
_ANCHORS = [0, 7, 11, 14, 16]  # level indices of T1, T8, T12, L3, L5
_NOMINAL = {  # nominal adult dimensions (mm / degrees) at the anchor levels
    "rx": [12, 16, 19, 23, 25],
    "ry": [9, 13, 14.5, 16, 17],
    "h": [14, 20, 23, 26, 26],
    "disc_h": [4, 5, 7, 10, 11],
    "canal_rx": [8, 7.5, 8.5, 11, 12],
    "canal_ry": [7, 7.5, 8, 8.5, 8.5],
    "ped_r": [3, 3.5, 4, 4.5, 5],
    "lam_r": [2.5, 2.5, 2.8, 3, 3],
    "sp_len": [24, 30, 28, 28, 24],
    "sp_angle": [30, 55, 25, 8, 10],
    "sp_r": [2.2, 2.2, 2.8, 3.2, 3.2],
    "sp_aspect": [1.5, 1.6, 2.4, 2.8, 2.6],
    "tp_len": [15, 15, 6, 20, 16],
    "tp_angle": [35, 35, 15, 5, 10],
    "tp_r": [3.5, 3.5, 2.5, 3, 3.5],
    "rib_r": [3, 3.2, 3, 3, 3],  # ribs ~6 mm thick, ~10 mm tall (aspect 1.6) down to T12
}
# Sagittal profile, Cobb angles (deg) drawn per case as (mean, sd, low, high): normal around
# the adult mean, a few % of cases in each tail (flat backs; strong curves, piling up at the
# clip), the lordosis clipped where its steepest disc reaches ~15 deg (bodies are not wedged).
LORDOSIS_DEG = (47.0, 8.0, 20.0, 60.0)  # L1 top to S1 top (adults ~30-60)
KYPHOSIS_DEG = (35.0, 8.0, 12.0, 62.0)  # T4 top to T12 bottom (adults ~20-50)
# Share of each Cobb angle bent by each disc: lordosis grows caudally (L4-S1 ~ half of it),
# kyphosis peaks at T7-T8; T1-T4 adds a quarter of the T4-T12 kyphosis over its 3 discs.
LORDOSIS_SHARE = (0.12, 0.17, 0.22, 0.24, 0.25)  # L1/L2 .. L5/S1
KYPHOSIS_SHARE = (0.08, 0.12, 0.15, 0.16, 0.16, 0.14, 0.11, 0.08)  # T4/T5 .. T11/T12
UPPER_KYPHOSIS = 0.25
# The T12/L1 disc is the transition (about straight), in some a small junctional kyphosis.
JUNCTION_KYPHOSIS_P = 0.15
JUNCTION_KYPHOSIS_DEG = (3.0, 10.0)
# The sacral slope (S1's endplate from the axial plane, deg) follows the lordosis (it sets the
# pelvis the lordosis stands on, Roussouly 2005): offset + share of the lordosis, sd, clip.
SACRAL_SLOPE = (8.0, 0.6, 4.0, (25.0, 55.0))
TILT_JITTER = 0.02  # sd of each vertebra's tilt off the axis tangent (rad, per direction)
CURVE_STEP_MM = 0.5  # arc-length step of the sampled axis
CURVE_BEYOND_MM = 300.0  # the axis runs on straight past T1 and below S1's endplate
# Bony ribs, head to tip (mm, adults): T1..T10 nominal by level, the floating T11/T12 drawn;
# the field of view cuts what it cannot show.
_RIB_ANCHORS = [0, 2, 5, 8, 9]  # level indices of T1, T3, T6, T9, T10
_RIB_NOMINAL_MM = [130, 230, 280, 260, 230]
FLOATING_RIB_MM = {"T11": (120.0, 200.0), "T12": (60.0, 140.0)}
SHORT_T12_RIB_MM = (30.0, 50.0)  # a rudimentary 12th rib ...
SHORT_T12_RIB_P = 0.1  # ... in this share of cases
RIB_RADIUS_MM = 85.0  # the shaft's curvature in the axial plane (a thorax ~140 mm half wide)
RIB_START_DEG = -25.0  # the shaft leaves the tubercle backward-lateral, then turns forward
RIB_LEVEL_MM = 30.0  # the shaft runs about level out to its angle (beside its vertebra) ...
RIB_DROP = 0.35  # ... then sinks this many mm per mm (the ribs slope down as they run round)
RIB_SEGMENT_MM = 20.0  # length of the capsules the curved shaft is drawn with


@dataclass(frozen=True)
class VertebraGeom:
    """Dimensions of one vertebra in mm (already scaled); angles in radians."""

    rx: float
    ry: float
    h: float
    disc_h: float  # disc below this vertebra
    canal_rx: float
    canal_ry: float
    ped_r: float
    lam_r: float
    sp_len: float
    sp_angle: float
    sp_r: float
    sp_aspect: float
    tp_len: float
    tp_angle: float
    tp_r: float
    rib_r: float
    cav: float  # endplate concavity depth
    waist: float  # relative narrowing at mid-height
    kidney: float  # posterior wall concavity
    rib_len: float  # bony rib, head to tip (0: none)
    has_cord: bool

    @property
    def canal_v(self) -> float:
        """Local anterior coordinate of the canal centre (just behind the body)."""
        return -(self.ry + 0.85 * self.canal_ry)

    @property
    def tip_v(self) -> float:
        """Local anterior coordinate of the spinous process tip."""
        return self.canal_v - self.canal_ry - 2 * self.lam_r - self.sp_len * np.cos(self.sp_angle)


@dataclass
class Vertebra:
    """A placed vertebra: geometry, pose in RAS mm and bone densities (HU)."""

    name: str
    level: int
    geom: VertebraGeom
    center: Array  # (3,) mm
    rot: Array  # (3, 3) columns = local lateral/anterior/axial axes
    in_segment: bool  # False for partially visible context vertebrae
    trab_hu: float
    cort_hu: float
    cort_mm: float
    osteoporotic: bool


@dataclass(frozen=True)
class SagittalAngles:
    """A case's sagittal profile in degrees (Cobb angles between endplates)."""

    lordosis: float  # L1 superior to S1 superior endplate
    kyphosis: float  # T4 superior to T12 inferior endplate
    junction: float  # kyphosis of the T12/L1 disc (0 in most)
    sacral_slope: float  # S1's superior endplate from the axial plane

    def wedges(self) -> Array:
        """Lordotic wedge (deg, < 0 kyphotic) of the disc below each level T1..L5 (L5/S1)."""
        kyphosis = np.array(KYPHOSIS_SHARE) * self.kyphosis
        return np.concatenate(
            [
                np.full(3, -UPPER_KYPHOSIS * self.kyphosis / 3),
                -kyphosis,
                [-self.junction],
                np.array(LORDOSIS_SHARE) * self.lordosis,
            ]
        )

    def inclinations(self) -> Array:
        """Sagittal inclination (deg, cranial axis toward anterior) of each level T1..L5: S1's
        is the sacral slope, and each disc above it bends the axis by its wedge."""
        return self.sacral_slope - np.cumsum(self.wedges()[::-1])[::-1]


def draw_sagittal_angles(rng: np.random.Generator) -> SagittalAngles:
    """Per-case lordosis, kyphosis, junctional kyphosis and sacral slope (module ranges)."""

    def clipped_normal(mean: float, sd: float, low: float, high: float) -> float:
        return float(np.clip(rng.normal(mean, sd), low, high))

    lordosis = clipped_normal(*LORDOSIS_DEG)
    offset, share, sd, (low, high) = SACRAL_SLOPE
    return SagittalAngles(
        lordosis=lordosis,
        kyphosis=clipped_normal(*KYPHOSIS_DEG),
        junction=rng.uniform(*JUNCTION_KYPHOSIS_DEG) if rng.random() < JUNCTION_KYPHOSIS_P else 0.0,
        sacral_slope=clipped_normal(offset + share * lordosis, sd, low, high),
    )


@dataclass(frozen=True)
class SpineCurve:
    """Smooth spinal axis x(z), y(z) in mm: a sagittal profile sampled along the axis (straight
    through each body, bent in the discs) plus a scoliotic sine."""

    z: Array  # (N,) heights of the sagittal samples, increasing
    y: Array  # (N,) anterior position of the axis there
    incline: Array  # (N,) inclination (rad) of the cranial tangent toward anterior
    x0: float
    zc: float
    half_len: float
    lateral: float
    waves: float
    phase: float

    def at(self, z: Array) -> tuple[Array, Array]:
        """Axis position (x, y) in mm at heights ``z`` (mm)."""
        zn = (z - self.zc) / self.half_len
        x = self.x0 + self.lateral * np.sin(np.pi * self.waves * zn + self.phase)
        return x, np.interp(z, self.z, self.y)

    def tangent(self, z: float) -> Array:
        """Unnormalised cranial tangent (3,) at height ``z``."""
        zn = (z - self.zc) / self.half_len
        k = np.pi * self.waves / self.half_len
        dx = self.lateral * k * np.cos(np.pi * self.waves * zn + self.phase)
        return np.array([dx, np.tan(np.interp(z, self.z, self.incline)), 1.0])


def sagittal_axis(
    geoms: dict[int, VertebraGeom], angles: SagittalAngles
) -> tuple[Array, Array, Array, Array, Array]:
    """The sagittal axis from S1's superior endplate (arc length 0) up past T1.

    Each body is straight along its level's inclination; the axis turns through each disc
    (inclination linear in arc length), so a disc's wedge is its inclination step.

    Returns:
        arc length (N,) of the samples, their z and y (mm, relative to the endplate), their
        inclination (rad), and the arc length of each level's centre (len(LEVELS),) mm.
    """
    incl = np.deg2rad(angles.inclinations())
    knots_s, knots_incl = [0.0], [np.deg2rad(angles.sacral_slope)]
    centres = np.zeros(len(LEVELS))
    top = 0.0
    for lv in range(len(LEVELS) - 1, -1, -1):
        bottom = top + geoms[lv].disc_h
        top = bottom + geoms[lv].h
        centres[lv] = (bottom + top) / 2
        knots_s += [bottom, top]
        knots_incl += [incl[lv], incl[lv]]
    s = np.arange(-CURVE_BEYOND_MM, top + CURVE_BEYOND_MM, CURVE_STEP_MM)
    incline = np.interp(s, knots_s, knots_incl)
    z, y = (_cumulative(f(incline)) * CURVE_STEP_MM for f in (np.cos, np.sin))
    z0, y0 = np.interp(0.0, s, z), np.interp(0.0, s, y)
    return s, z - z0, y - y0, incline, centres


def _cumulative(values: Array) -> Array:
    """Trapezoidal running sum of evenly spaced ``values`` (N,) in steps, 0 at the first."""
    return np.concatenate([[0.0], np.cumsum((values[1:] + values[:-1]) / 2)])


@dataclass
class SpineLayout:
    """Vertebrae (cranial first), the axis curve, the anatomy scale factor, the sagittal
    angles the case drew and the height (mm) of S1's superior endplate on the axis."""

    vertebrae: list[Vertebra]
    curve: SpineCurve
    scale: float
    angles: SagittalAngles
    s1_top_z: float


def level_geom(level: int, scale: float, rng: np.random.Generator) -> VertebraGeom:
    """Geometry of vertebra ``level`` (index into LEVELS) scaled by ``scale`` with ~5 % jitter."""
    nominal = {k: float(np.interp(level, _ANCHORS, v)) for k, v in _NOMINAL.items()}
    jit = {k: val * rng.uniform(0.95, 1.05) for k, val in nominal.items()}
    lengths = {k: jit[k] * scale for k in jit if k not in ("sp_angle", "tp_angle", "sp_aspect")}
    return VertebraGeom(
        **lengths,
        sp_angle=np.deg2rad(jit["sp_angle"]),
        tp_angle=np.deg2rad(jit["tp_angle"]),
        sp_aspect=jit["sp_aspect"],
        cav=rng.uniform(0.8, 1.6) * scale,
        waist=rng.uniform(0.07, 0.14),
        kidney=rng.uniform(0.1, 0.25),
        rib_len=rib_length(level, rng) * scale,
        has_cord=level <= LEVELS.index("L1"),
    )


def rib_length(level: int, rng: np.random.Generator) -> float:
    """Adult bony rib length (mm, head to tip) of vertebra ``level``; 0 below T12."""
    name = LEVELS[level] if level < len(LEVELS) else ""
    if name == "T12" and rng.random() < SHORT_T12_RIB_P:
        return rng.uniform(*SHORT_T12_RIB_MM)
    if name in FLOATING_RIB_MM:
        return rng.uniform(*FLOATING_RIB_MM[name])
    if level < LEVELS.index("T11"):
        return float(np.interp(level, _RIB_ANCHORS, _RIB_NOMINAL_MM)) * rng.uniform(0.95, 1.05)
    return 0.0


def _nominal(level: int, key: str) -> float:
    return float(np.interp(level, _ANCHORS, _NOMINAL[key]))


def layout_spine(
    rng: np.random.Generator,
    origin: Array,
    spacing: Array,
    shape: tuple[int, int, int],
    appearance: PhantomAppearance,
) -> SpineLayout:
    """Place a thoraco-lumbar spine of adult size in the volume.

    Vertebrae keep adult dimensions times one patient size factor whatever the field of view
    (a field scaled to fit would teach the models one vertebra size in pixels): a tight field
    shows two or three levels, a tall one many. The field is centred near a level drawn from
    ``appearance.levels``, and only those levels are ``in_segment`` (may carry fractures and
    distractors). Vertebrae follow a curved axis, each tilted along the axis tangent and
    axially rotated: the sagittal profile of the whole spine (thoracic kyphosis, lumbar
    lordosis, the sacral slope below, ``draw_sagittal_angles``) with a mild scoliotic wave.
    """
    fov = (np.asarray(shape) - 1) * spacing
    centre = origin + fov / 2
    first, last = (LEVELS.index(lv) for lv in appearance.levels)
    segment = range(first, last + 1)
    middle = int(rng.integers(first, last + 1))
    scale = rng.uniform(*appearance.size_scale)
    geoms = {lv: level_geom(lv, scale, rng) for lv in range(len(LEVELS))}
    angles = draw_sagittal_angles(rng)

    # The middle level's centre sits near mid-field, at any phase: body or disc mid-field.
    s, z_rel, y_rel, incline, s_centres = sagittal_axis(geoms, angles)
    pitch = geoms[middle].h + geoms[middle].disc_h
    shift = centre[2] + rng.uniform(-0.5, 0.5) * pitch - np.interp(s_centres[middle], s, z_rel)
    z = {lv: float(np.interp(s_centres[lv], s, z_rel)) + shift for lv in range(len(LEVELS))}
    y_off = {lv: float(np.interp(s_centres[lv], s, y_rel)) for lv in range(len(LEVELS))}
    in_view = [middle] + [lv for lv in range(len(LEVELS)) if abs(z[lv] - centre[2]) <= fov[2] / 2]

    mid = geoms[middle]
    y0 = centre[1] - (mid.ry + 3 * scale + mid.tip_v) / 2 + rng.normal(0, 0.02) * fov[1]
    # A field too shallow for the whole vertebra cuts the spinous processes, not the bodies
    # (where fractures are), as spine-centred reconstructions do.
    front = centre[1] + fov[1] / 2 - BODY_MARGIN_MM * scale
    y0 = min(y0, *(front - geoms[lv].ry - (y_off[lv] - y_off[middle]) for lv in in_view))
    curve = SpineCurve(
        z=z_rel + shift,
        y=y_rel + y0 - y_off[middle],
        incline=incline,
        x0=centre[0] + rng.normal(0, 0.02) * fov[0],
        zc=centre[2],
        half_len=fov[2] / 2,
        lateral=rng.uniform(1, 5) * scale,
        waves=rng.uniform(0.4, 1.1),
        phase=rng.uniform(0, 2 * np.pi),
    )
    density = rng.uniform(*appearance.trabecular_hu)  # patient bone density (trabecular HU)
    osteoporotic = bool(density < OSTEOPOROTIC_HU)
    cort_hu = rng.uniform(*appearance.cortical_hu)
    vertebrae = []
    for lv in range(len(LEVELS)):
        g = geoms[lv]
        if abs(z[lv] - centre[2]) > fov[2] / 2 + g.h:  # entirely outside the field of view
            continue
        x, y = curve.at(np.array(z[lv]))
        tilt = curve.tangent(z[lv]) + np.append(rng.normal(0, TILT_JITTER, 2), 0.0)
        rotation = np.deg2rad(0.6 * (x - curve.x0) / scale + rng.normal(0, 2))
        vertebrae.append(
            Vertebra(
                name=LEVELS[lv],
                level=lv,
                geom=g,
                center=np.array([float(x), float(y), z[lv]]),
                rot=frame_from_axis(tilt, rotation),
                in_segment=lv in segment,
                trab_hu=float(density * rng.uniform(0.9, 1.1)),
                cort_hu=float(cort_hu * rng.uniform(0.95, 1.05)),
                cort_mm=cortex_mm(rng, (1.0, 1.8), osteoporotic, scale, spacing),
                osteoporotic=osteoporotic,
            )
        )
    return SpineLayout(vertebrae, curve, scale, angles, shift)


def cortex_mm(
    rng: np.random.Generator,
    nominal_mm: tuple[float, float],
    osteoporotic: bool,
    scale: float,
    spacing: Array,
) -> float:
    """Cortex thickness (mm) drawn from ``nominal_mm`` (adult, normal bone), thinned by a third
    in osteoporosis, kept >= ~1 voxel of ``spacing`` (3,) so it survives partial-volume blur."""
    drawn = rng.uniform(*nominal_mm) * (OSTEOPOROTIC_CORTEX if osteoporotic else 1.0) * scale
    return float(max(drawn, 1.05 * spacing.min()))


def body_sdf(
    u: Array,
    v: Array,
    w: Array,
    g: VertebraGeom,
    top_drop: Array | float = 0.0,
    bottom_drop: Array | float = 0.0,
) -> tuple[Array, Array]:
    """Signed distance (mm) to a vertebral body and distance to the nearer endplate (mm).

    The body is an elliptic cylinder with a concave waist, a concave posterior wall and dished
    endplates; ``top_drop``/``bottom_drop`` (mm) lower/raise the endplates (fracture collapse).
    """
    hn = np.clip(2 * w / g.h, -1, 1)
    waist = 1 - g.waist * (1 - hn * hn)
    rx, ry = g.rx * waist, g.ry * waist
    posterior = np.clip(-v / ry, 0, 1)
    ve = v * (1 + g.kidney * np.clip(1 - (u / rx) ** 2, 0, 1) * posterior)
    radial, rn = ellipse_sdf(u, ve, rx, ry)
    dish = g.cav * np.clip(1 - rn * rn, 0, 1)
    end = np.minimum(g.h / 2 - dish - top_drop - w, w + g.h / 2 - dish - bottom_drop)
    return np.minimum(radial, end), end


def canal_sdf(u: Array, v: Array, g: VertebraGeom) -> tuple[Array, Array]:
    """Signed distance (mm) to the spinal canal (elliptic tube along w) and normalised radius."""
    return ellipse_sdf(u, v - g.canal_v, g.canal_rx, g.canal_ry)


@dataclass(frozen=True)
class Capsule:
    """A capsule primitive in local vertebra coordinates (mm)."""

    a: Array
    b: Array
    radius: float
    aspect: float = 1.0

    def sdf(self, u: Array, v: Array, w: Array) -> Array:
        """Signed distance (mm) at local coordinates of the same shape."""
        return capsule_sdf(u, v, w, self.a, self.b, self.radius, self.aspect)

    def extent(self) -> tuple[Array, float]:
        """End points (2, 3) and padding (mm) bounding the capsule."""
        return np.stack([self.a, self.b]), self.radius * max(self.aspect, 1.0)


def posterior_elements(g: VertebraGeom) -> list[Capsule]:
    """Pedicles, laminae, spinous, transverse and articular processes (and ribs) as capsules."""
    vc, wp = g.canal_v, 0.12 * g.h
    roof = np.array([0.0, vc - g.canal_ry - 1.3 * g.lam_r, wp - 0.08 * g.h])
    tip = roof + g.sp_len * np.array([0.0, -np.cos(g.sp_angle), -np.sin(g.sp_angle)])
    parts = [
        Capsule(roof, tip, g.sp_r, g.sp_aspect),
        Capsule(tip, tip, 1.25 * g.sp_r, 1.3),  # bulbous tip
    ]
    for side in (-1.0, 1.0):
        px = side * (g.canal_rx + 0.55 * g.ped_r)
        junction = np.array([side * (g.canal_rx + 0.5 * g.ped_r), vc - 0.55 * g.canal_ry, wp])
        tp_tip = junction + g.tp_len * np.array(
            [side * np.cos(g.tp_angle), -np.sin(g.tp_angle), 0.02]
        )
        sap_top = junction + np.array([side * 0.3 * g.ped_r, -0.6 * g.ped_r, 0.45 * g.h])
        iap = np.array([side * 0.75 * g.canal_rx, vc - g.canal_ry - 0.5 * g.ped_r, -0.1 * g.h])
        parts += [
            Capsule(
                np.array([px, -0.75 * g.ry, wp]),
                np.array([px, vc - 0.35 * g.canal_ry, wp]),
                g.ped_r,
                1.4,
            ),
            Capsule(junction, roof, g.lam_r, 2.2),
            Capsule(junction, tp_tip, g.tp_r, 1.2),
            Capsule(junction, sap_top, 0.75 * g.ped_r),
            Capsule(
                iap,
                iap + np.array([0.0, -0.3 * g.ped_r, -0.5 * g.h - 0.3 * g.disc_h]),
                0.7 * g.ped_r,
            ),
        ]
        if g.rib_len > 0:
            head = np.array([side * 0.8 * g.rx, -0.6 * g.ry, 0.4 * g.h])
            tubercle = tp_tip + np.array([0.0, 0.4 * g.tp_r, 0.0])
            shaft = rib_shaft(tubercle, side, g.rib_len - float(np.linalg.norm(tubercle - head)))
            parts.append(Capsule(head, tubercle, g.rib_r, 1.5))
            parts += [Capsule(a, b, g.rib_r, 1.6) for a, b in pairwise(shaft)]
    return parts


def rib_shaft(tubercle: Array, side: float, length: float) -> Array:
    """Points (N, 3) along a rib's shaft of ``length`` mm from its tubercle (local mm): an arc
    of ``RIB_RADIUS_MM`` in the axial plane leaving backward-lateral on ``side`` and turning
    forward, level for ``RIB_LEVEL_MM`` and then sloping down by ``RIB_DROP``; just the
    tubercle when ``length`` <= 0."""
    t = np.linspace(0.0, max(length, 0.0), max(int(np.ceil(length / RIB_SEGMENT_MM)), 0) + 1)
    t = np.union1d(t, [RIB_LEVEL_MM]) if length > RIB_LEVEL_MM else t  # a point at the bend
    start = np.deg2rad(RIB_START_DEG)
    heading = start + t / RIB_RADIUS_MM  # from lateral toward anterior
    lateral = RIB_RADIUS_MM * (np.sin(heading) - np.sin(start))
    anterior = RIB_RADIUS_MM * (np.cos(start) - np.cos(heading))
    down = RIB_DROP * np.maximum(t - RIB_LEVEL_MM, 0.0)
    return tubercle + np.stack([side * lateral, anterior, -down], axis=1)


def vertebra_extent(g: VertebraGeom) -> tuple[Array, Array]:
    """Local cuboid (lo, hi) in mm enclosing the body, posterior elements and disc halves."""
    parts = posterior_elements(g)
    pts = np.concatenate([c.extent()[0] for c in parts])
    pad = max(c.extent()[1] for c in parts)
    lo = np.minimum(pts.min(0) - pad, [-g.rx, -g.ry, -g.h / 2 - g.disc_h])
    hi = np.maximum(pts.max(0) + pad, [g.rx, g.ry, g.h / 2 + g.disc_h])
    return lo - 2.0, hi + 2.0


@dataclass(frozen=True)
class SliceProfile:
    """Per-slice (1, 1, Z) spine landmarks in world mm used to lay out the soft tissue."""

    cx: Array
    cy: Array
    rx: Array
    ry: Array
    tip_v: Array
    lateral: Array  # half-width of the posterior elements
    level: Array  # fractional level index (0 = T1)


def slice_profile(layout: SpineLayout, z: Array) -> SliceProfile:
    """Interpolate vertebra dimensions at world heights ``z`` (Z,)."""
    verts = sorted(layout.vertebrae, key=lambda vt: vt.center[2])
    zc = np.array([vt.center[2] for vt in verts])

    def interp(values: list[float]) -> Array:
        return np.interp(z, zc, values)[None, None, :]

    cx, cy = layout.curve.at(z)
    return SliceProfile(
        cx=cx[None, None, :],
        cy=cy[None, None, :],
        rx=interp([vt.geom.rx for vt in verts]),
        ry=interp([vt.geom.ry for vt in verts]),
        tip_v=interp([vt.geom.tip_v for vt in verts]),
        lateral=interp([vt.geom.canal_rx + vt.geom.ped_r + vt.geom.tp_len for vt in verts]),
        level=interp([float(vt.level) for vt in verts]),
    )


def paint_soft_tissue(
    labels: Array,
    hu: Array,
    x: Array,
    y: Array,
    prof: SliceProfile,
    coarse: Array,
    rng: np.random.Generator,
    scale: float,
    contrast: bool,
) -> None:
    """Paint body outline, subcutaneous fat, viscera, muscles and great vessels in place.

    ``labels``/``hu`` are (X, Y, Z); ``x`` (X, 1, 1) and ``y`` (1, Y, 1) world mm; ``coarse``
    is a unit-variance low-frequency noise field (X, Y, Z) used for tissue heterogeneity.
    """

    def paint(region: Array, tissue: Tissue, value: Array | float) -> None:
        labels[region] = tissue
        hu[region] = np.broadcast_to(value, region.shape)[region]

    # Torso ellipse: posterior skin sits behind the spinous tips, the rest may be cut by the FOV.
    fat_mm = rng.uniform(6, 25) * scale
    ay = rng.uniform(110, 150) * scale
    ax = ay * rng.uniform(1.25, 1.6)
    back = prof.cy + prof.tip_v - fat_mm - rng.uniform(3, 10) * scale
    tx, ty = x - prof.cx, y - (back + ay)
    torso, _ = ellipse_sdf(tx, ty, ax, ay)
    paint(torso > 0, Tissue.SOFT, 25.0)  # skin
    paint(torso > 1.5, Tissue.FAT, -100 + 10 * coarse)
    inner = torso > fat_mm
    visceral_fat = coarse > rng.uniform(0.2, 0.9)
    paint(inner, Tissue.SOFT, 38 + 8 * coarse)
    paint(inner & visceral_fat, Tissue.FAT, -95 + 10 * coarse)

    # Paraspinal muscles flank the spinous processes; psoas grows along the lumbar spine.
    mus_ax = 0.55 * prof.lateral + 4 * scale
    mus_ay = 0.45 * np.abs(prof.tip_v)
    psoas_r = np.clip((prof.level - 11) / 5, 0, 1) * 16 * scale + 1e-3
    muscles = []
    for side in (-1, 1):
        mx = prof.cx + side * (prof.lateral * 0.5 + 2 * scale)
        muscles.append(ellipse_sdf(x - mx, y - (prof.cy + 0.62 * prof.tip_v), mus_ax, mus_ay)[0])
        px = prof.cx + side * (prof.rx + 0.7 * psoas_r)
        muscles.append(ellipse_sdf(x - px, y - (prof.cy - 0.1 * prof.ry), psoas_r, psoas_r)[0])
    muscle = np.max(np.stack(muscles), axis=0)
    paint(inner & (muscle > -1.5), Tissue.FAT, -90 + 8 * coarse)  # fascial fat planes
    paint(inner & (muscle > 0), Tissue.MUSCLE, rng.uniform(45, 58) + 5 * coarse)

    # Aorta anterior-left of the body (patient left is -x in RAS); IVC anterior-right.
    r_ao = rng.uniform(8, 11) * scale
    ao_hu = rng.uniform(150, 250) if contrast else rng.uniform(35, 45)
    ao, _ = ellipse_sdf(
        x - (prof.cx - 0.4 * prof.rx), y - (prof.cy + prof.ry + r_ao + 2 * scale), r_ao, r_ao
    )
    paint(inner & (ao > 0), Tissue.VESSEL, ao_hu)
    r_ivc = rng.uniform(7, 10) * scale
    ivc, _ = ellipse_sdf(
        x - (prof.cx + 0.6 * prof.rx + r_ivc),
        y - (prof.cy + prof.ry + 0.8 * r_ivc),
        r_ivc * 1.2,
        r_ivc * 0.8,
    )
    paint(inner & (ivc > 0), Tissue.VESSEL, 0.7 * ao_hu + 10)
