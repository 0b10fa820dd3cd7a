"""Spine anatomy of the phantom: tissue labels, vertebral geometry, spinal layout, soft tissue.

Conventions: world space is canonical RAS in mm (+x right, +y anterior, +z superior). Each
vertebra has local coordinates (u lateral, v anterior, w axial/cranial) centred on its body.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
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
}


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
    cav: float  # endplate concavity depth
    waist: float  # relative narrowing at mid-height
    kidney: float  # posterior wall concavity
    has_rib: bool
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
class SpineCurve:
    """Smooth spinal axis x(z), y(z) in mm: sagittal parabola plus scoliotic sine."""

    x0: float
    y0: float
    zc: float
    half_len: float
    sagittal: float  # > 0 kyphosis, < 0 lordosis (mm at the ends)
    lateral: float
    waves: float
    phase: float

    def at(self, z: Array) -> tuple[Array, Array]:
        """Axis position (x, y) in mm at heights ``z`` (mm)."""
        zn = (z - self.zc) / self.half_len
        x = self.x0 + self.lateral * np.sin(np.pi * self.waves * zn + self.phase)
        return x, self.y0 + self.sagittal * (zn**2 - 1.0 / 3.0)

    def tangent(self, z: float) -> Array:
        """Unnormalised cranial tangent (3,) at height ``z``."""
        zn = (z - self.zc) / self.half_len
        k = np.pi * self.waves / self.half_len
        dx = self.lateral * k * np.cos(np.pi * self.waves * zn + self.phase)
        return np.array([dx, 2 * self.sagittal * zn / self.half_len, 1.0])


@dataclass
class SpineLayout:
    """Vertebrae (cranial first), the axis curve and the anatomy scale factor."""

    vertebrae: list[Vertebra]
    curve: SpineCurve
    scale: float


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
        has_rib=level <= LEVELS.index("T12"),
        has_cord=level <= LEVELS.index("L1"),
    )


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
    distractors). Vertebrae follow a curved axis (kyphosis/lordosis + mild scoliosis), each
    tilted along the axis tangent and axially rotated.
    """
    fov = (np.asarray(shape) - 1) * spacing
    centre = origin + fov / 2
    first, last = (LEVELS.index(lv) for lv in appearance.levels)
    segment = range(first, last + 1)
    middle = int(rng.integers(first, last + 1))
    scale = rng.uniform(*appearance.size_scale)
    geoms = {lv: level_geom(lv, scale, rng) for lv in range(len(LEVELS))}

    # Stack vertebra centres cranio-caudally from the middle level, which sits near mid-field.
    z = {middle: 0.0}
    for lv in range(middle + 1, len(LEVELS)):
        z[lv] = z[lv - 1] - (geoms[lv - 1].h / 2 + geoms[lv - 1].disc_h + geoms[lv].h / 2)
    for lv in range(middle - 1, -1, -1):
        z[lv] = z[lv + 1] + (geoms[lv].h / 2 + geoms[lv].disc_h + geoms[lv + 1].h / 2)
    pitch = geoms[middle].h + geoms[middle].disc_h
    shift = centre[2] + rng.uniform(-0.5, 0.5) * pitch  # any phase: body or disc mid-field
    z = {lv: zz + shift for lv, zz in z.items()}

    mid = geoms[middle]
    y0 = centre[1] - (mid.ry + 3 * scale + mid.tip_v) / 2 + rng.normal(0, 0.02) * fov[1]
    # A field too shallow for the whole vertebra cuts the spinous processes, not the body
    # (where fractures are), as spine-centred reconstructions do.
    y0 = min(y0, centre[1] + fov[1] / 2 - mid.ry - BODY_MARGIN_MM * scale)
    curve = SpineCurve(
        x0=centre[0] + rng.normal(0, 0.02) * fov[0],
        y0=y0,
        zc=centre[2],
        half_len=fov[2] / 2,
        sagittal=rng.choice([-1, 1]) * rng.uniform(2, 9) * scale,
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
        tilt = curve.tangent(z[lv]) + np.append(rng.normal(0, 0.03, 2), 0.0)
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
    return SpineLayout(vertebrae, curve, scale)


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
        if g.has_rib:
            head = np.array([side * 0.8 * g.rx, -0.6 * g.ry, 0.4 * g.h])
            tubercle = tp_tip + np.array([0.0, 0.4 * g.tp_r, 0.0])
            angle = tubercle + np.array([side * 3.0, -1.0, -0.5]) * g.tp_len
            front = angle + np.array([side * 2.0, 4.0, -1.5]) * g.tp_len
            r = 0.9 * g.tp_r
            parts += [
                Capsule(head, tubercle, r, 1.5),
                Capsule(tubercle, angle, r, 1.6),
                Capsule(angle, front, r, 1.6),
            ]
    return parts


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
