"""Sacrum and pelvis of the phantom, drawn where the field reaches below L5.

The sacrum hangs from S1, whose superior endplate lies on the spinal axis under the L5/S1
disc, inclined by the case's sacral slope (``anatomy.SagittalAngles``): the disc is wedged by
what the lordosis bends at L5/S1. It lives in S1's frame (u lateral, v anterior, w along
S1's axis, centred on the S1 body, as a vertebra's): S1's body and posterior arch, the lower
segments narrowing along a circular arc that carries them back and down (the sacrum's anterior
concavity), the lateral masses (the alae at S1) with the anterior sacral foramina, and the
sacral canal.

Each ilium is a curved plate in a world-aligned frame whose origin is the centre of S1's
superior endplate (x mirrored to the side): in every axial plane an elliptic arc, convex
posterolaterally (gluteal surface) and concave anteromedially (iliac fossa), from the
sacroiliac joint to the anterior superior iliac spine; thin in the fossa, thicker along the
crest and behind the joint (iliac tuberosity); its sacroiliac end follows the sacrum back
down the joint and keeps that depth below it (greater sciatic notch). The ilium stops a joint
space short of the sacrum's lateral mass: that gap is the sacroiliac joint. Lengths are in mm,
angles in radians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import (
    LEVELS,
    SpineLayout,
    Vertebra,
    body_sdf,
    cortex_mm,
    level_geom,
    vertebra_extent,
)
from .config import PhantomAppearance
from .geometry import Array, capsule_sdf, ellipse_sdf, frame_from_axis

SACRAL_LENGTH_MM = (95.0, 115.0)  # S1 endplate to the S5 tip along the curve (adults)
SACRAL_RADIUS_MM = (90.0, 140.0)  # radius of the sacrum's anterior concavity
SACRAL_TAPER = (0.6, 0.45)  # width, depth of the S5 body lost relative to S1's
ALA_HALF_WIDTH_MM = (46.0, 56.0)  # midline to the sacroiliac joint (sacral base 95-115 mm wide)
ALA_TOP = 0.15  # ala tops lie this share of S1's height below its endplate ...
ALA_SLOPE = 0.35  # ... and fall this many mm per mm outward (the alae slope down laterally)
AURICULAR = 0.35  # share of the sacral length over which the lateral masses keep their width
SACRAL_APEX_WIDTH = 0.25  # width of the lateral masses at the apex relative to the alae
FORAMEN_MM = (3.5, 5.0)  # radius of the first anterior sacral foramina; lower ones narrow
FORAMINA = 4  # pairs, between the five fused segments
SI_JOINT_MM = (1.5, 3.5)  # sacroiliac joint space on CT (adults: 2-4 mm)
CARTILAGE_HU = (50.0, 80.0)  # joint space: cartilage and ligament
CREST_ABOVE_L5_TOP_MM = (-8.0, 12.0)  # iliac crest top vs L5's superior endplate (L4-L5 level)
CREST_DROP_MM = 15.0  # the crest falls this much from its top to the iliac spines
ILIAC_HALF_SPAN_MM = (115.0, 140.0)  # midline to the lateral crest (intercristal 230-280 mm)
ILIAC_DEPTH_MM = 110.0  # crest top to the acetabular roof, where the wing ends here
ILIAC_TAPER = 0.35  # the wing narrows by this share from the crest to its lower end
ILIAC_AP_RATIO = (0.55, 0.7)  # antero-posterior over lateral semi-axis of the wing's arc
ILIAC_POST_DEG = (-112.0, -100.0)  # arc angle of the sacroiliac end (0 lateral, -90 posterior)
ILIAC_ANT_DEG = (35.0, 55.0)  # arc angle of the anterior superior iliac spine
SI_OVERLAP_MM = 4.0  # the arc reaches this far into the ala, so the joint follows its surface
SI_JOINT_DEPTH_MM = (40.0, 55.0)  # joint below S1's endplate, then the greater sciatic notch
NOTCH_DEG_PER_MM = 2.0  # how fast the posterior edge retreats laterally below the joint
ILIAC_WING_MM = (5.0, 9.0)  # iliac fossa: a thin plate of two cortices around marrow
ILIAC_CREST_MM = (9.0, 14.0)  # thickness along the crest
CREST_RIM_MM = 10.0  # height over which the crest's thickening fades
ILIAC_TUBEROSITY_MM = (16.0, 26.0)  # posterior ilium behind the sacroiliac joint ...
TUBEROSITY_RAD = 0.5  # ... fading over this arc angle from the joint
ILIAC_CORTEX_HU = (700.0, 1200.0)  # iliac cortex on CT, denser than the vertebral shell
ILIAC_CORTEX_MM = (1.5, 3.0)  # iliac cortex thickness (normal bone)


@dataclass(frozen=True)
class Sacrum:
    """S1 (pose, body geometry, densities) and the shape of the sacrum below it."""

    s1: Vertebra
    radius: float  # of the arc the lower segments follow (mm)
    length: float  # S1 endplate to apex along the arc (mm)
    ala_mm: float  # half width of the alae (mm)
    foramen_mm: float  # radius of the first foramina (mm)

    def unrolled(self, v: Array, w: Array) -> tuple[Array, Array]:
        """Anterior offset ``n`` from the sacral arc and arc length ``s`` below S1's superior
        endplate (mm, the shape of ``v``/``w``) of S1-frame coordinates."""
        below = w - self.s1.geom.h / 2
        back = self.radius - v  # the arc's centre lies in front of S1: the sacrum is concave
        return self.radius - np.hypot(back, below), self.radius * np.arctan2(-below, back)

    def profile(self, s: Array) -> dict[str, Array]:
        """Half widths and antero-posterior bounds (mm) of the sacrum at arc length ``s``."""
        g = self.s1.geom
        t = np.clip(s / self.length, 0, 1)
        ry = g.ry * (1 - SACRAL_TAPER[1] * t)
        canal_ry = g.canal_ry * (1 - 0.4 * t)
        canal_v = -(ry + 0.85 * canal_ry)
        narrowing = np.clip((t - AURICULAR) / (1 - AURICULAR), 0, 1)
        return {
            "rx": g.rx * (1 - SACRAL_TAPER[0] * t),
            "ry": ry,
            "canal_rx": g.canal_rx * (1 - 0.5 * t),
            "canal_ry": canal_ry,
            "canal_v": canal_v,
            "width": self.ala_mm * (1 - (1 - SACRAL_APEX_WIDTH) * narrowing),
            "front": 0.45 * ry,
            "back": canal_v - canal_ry - 2 * g.lam_r,
        }

    def behind(self, drop: float) -> float:
        """How far (mm) the sacrum's arc lies behind S1's superior endplate centre ``drop`` mm
        (world z) below it, in the sagittal plane: the sacral slope run down the arc."""
        slope = np.arccos(self.s1.rot[2, 2])
        below = np.clip(np.sin(slope) - drop / self.radius, -1.0, 1.0)
        return float(self.radius * (np.sqrt(1 - below**2) - np.cos(slope)))

    def extent(self) -> tuple[Array, Array]:
        """S1-frame cuboid (lo, hi) in mm enclosing S1 with its posterior elements and the
        sacrum below it."""
        g = self.s1.geom
        phi = np.linspace(0, self.length / self.radius, 9)
        arc = np.stack(
            [0 * phi, self.radius * (1 - np.cos(phi)), g.h / 2 - self.radius * np.sin(phi)], 1
        )
        top = self.profile(np.asarray(0.0))
        pad = np.array([self.ala_mm, -top["back"], -top["back"]])
        lo, hi = vertebra_extent(g)
        return np.minimum(lo, arc.min(0) - pad), np.maximum(hi, arc.max(0) + pad)

    def lateral_mass_sdf(self, u: Array, n: Array, s: Array) -> Array:
        """Signed distance (mm) to the lateral masses (alae at S1) at unrolled coordinates."""
        p, g = self.profile(s), self.s1.geom
        top = ALA_TOP * g.h + ALA_SLOPE * np.maximum(np.abs(u) - g.rx, 0)
        return np.minimum.reduce(
            [p["width"] - np.abs(u), p["front"] - n, n - p["back"], s - top, self.length - s]
        )

    def sdf(self, u: Array, v: Array, w: Array, arch: Array) -> tuple[Array, Array]:
        """Signed distance (mm) to the sacrum at S1-frame coordinates and distance to S1's
        endplates (mm, inf off its body); ``arch`` is the signed distance to S1's posterior
        elements. All arrays share one shape."""
        g = self.s1.geom
        n, s = self.unrolled(v, w)
        p = self.profile(s)
        body, end = body_sdf(u, v, w, g)
        lower = np.minimum.reduce(
            [ellipse_sdf(u, n, p["rx"], p["ry"])[0], s - g.h / 2, self.length - s]
        )
        d = np.maximum.reduce([arch, body, lower, self.lateral_mass_sdf(u, n, s)])
        canal, _ = ellipse_sdf(u, n - p["canal_v"], p["canal_rx"], p["canal_ry"])
        d = np.minimum(d, -canal)
        seg = (self.length - g.h) / FORAMINA
        for k in range(FORAMINA):  # anterior foramina into the canal, beside each junction
            sk = g.h + k * seg
            at = self.profile(np.asarray(sk))
            radius = self.foramen_mm * (1 - 0.15 * k)
            for side in (-1.0, 1.0):
                x = side * (at["rx"] + radius + 1.0)
                front = np.array([x, at["front"] + 2.0, sk])
                hole = capsule_sdf(u, n, s, front, np.array([x, at["canal_v"], sk]), radius)
                d = np.minimum(d, -hole)
        return d, np.where(body > -1.0, end, np.inf)


@dataclass(frozen=True)
class Ilium:
    """One iliac wing in the pelvis frame (mm), drawn on the +x side and mirrored by ``side``."""

    side: float  # -1 or +1: the world x side the wing lies on
    anchor: Array  # (2,) x (mirrored), y of the arc's sacroiliac end at the frame's origin level
    ax: float  # lateral semi-axis of the arc at the crest
    ay: float  # antero-posterior semi-axis
    post: float  # arc angle of the sacroiliac end
    ant: float  # arc angle of the anterior superior iliac spine
    crest: float  # height of the crest top above the origin
    notch: float  # height below which the posterior edge retreats (greater sciatic notch)
    drift: float  # the sacroiliac end moves back this many mm per mm down to the notch
    wing_mm: float
    crest_mm: float
    tuberosity_mm: float

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        """Signed distance (mm) to the ilium at pelvis-frame coordinates (mm, one shape)."""
        mx = self.side * x
        ax = self.ax * (1 - ILIAC_TAPER * np.clip((self.crest - z) / ILIAC_DEPTH_MM, 0, 1))
        # the arc through the sacroiliac end, following the sacrum back along the joint
        cx = self.anchor[0] - ax * np.cos(self.post)
        cy = self.anchor[1] + self.drift * np.clip(z, self.notch, 0) - self.ay * np.sin(self.post)
        radial, _ = ellipse_sdf(mx - cx, y - cy, ax, self.ay)
        angle = np.arctan2((y - cy) / self.ay, (mx - cx) / ax)
        speed = np.hypot(ax * np.sin(angle), self.ay * np.cos(angle))  # mm per radian of arc
        post = self.post + np.deg2rad(NOTCH_DEG_PER_MM) * np.clip(self.notch - z, 0, None)
        sector = np.minimum(angle - post, self.ant - angle) * speed
        middle, span = (self.post + self.ant) / 2, (self.ant - self.post) / 2
        top = self.crest - CREST_DROP_MM * ((angle - middle) / span) ** 2
        rim = np.exp(-(((top - z) / CREST_RIM_MM) ** 2))
        inner = (self.wing_mm + (self.crest_mm - self.wing_mm) * rim) / 2
        outer = inner + self.tuberosity_mm * np.exp(-(((angle - self.post) / TUBEROSITY_RAD) ** 2))
        shell = np.minimum(radial + outer, inner - radial)
        bottom = z - (self.crest - ILIAC_DEPTH_MM)
        return np.minimum.reduce([shell, sector, top - z, bottom])

    def extent(self) -> tuple[Array, Array]:
        """Pelvis-frame cuboid (lo, hi) in mm enclosing the wing."""
        reach = self.ax * (1 - np.cos(self.post)) + self.anchor[0] + self.crest_mm
        xs = self.side * np.array([self.anchor[0] - self.tuberosity_mm, reach])
        back = self.anchor[1] + self.drift * self.notch - self.tuberosity_mm - self.ay
        front = self.anchor[1] + 2 * self.ay
        lo = np.array([xs.min(), back, self.crest - ILIAC_DEPTH_MM])
        return lo - 2.0, np.array([xs.max(), front, self.crest]) + 2.0


@dataclass(frozen=True)
class Pelvis:
    """Sacrum, both ilia, the pelvis frame (origin: S1's superior endplate centre, world
    axes) and what the ilia and joints are made of."""

    sacrum: Sacrum
    ilia: tuple[Ilium, Ilium]
    origin: Array  # (3,) world mm
    rot: Array  # (3, 3)
    joint_mm: float
    cartilage_hu: float
    trab_hu: float  # iliac marrow
    cort_hu: float  # iliac cortex
    cort_mm: float
    osteoporotic: bool


def place_s1(
    l5: Vertebra, layout: SpineLayout, spacing: Array, rng: np.random.Generator
) -> Vertebra:
    """S1 under L5: its superior endplate centred on the spinal axis below the L5/S1 disc,
    tilted along the axis there (the sacral slope), densities of the patient's vertebrae."""
    g = level_geom(len(LEVELS), layout.scale, rng)  # np.interp holds L5's nominal size
    top = np.array([*layout.curve.at(np.array(layout.s1_top_z)), layout.s1_top_z], float)
    rot = frame_from_axis(layout.curve.tangent(layout.s1_top_z), rng.normal(0, 0.03))
    verts = layout.vertebrae
    return Vertebra(
        name="S1",
        level=len(LEVELS),
        geom=g,
        center=top - g.h / 2 * rot[:, 2],
        rot=rot,
        in_segment=False,  # never fractured: no comparable body
        trab_hu=float(np.mean([vt.trab_hu for vt in verts]) * rng.uniform(0.9, 1.1)),
        cort_hu=float(np.mean([vt.cort_hu for vt in verts]) * rng.uniform(0.95, 1.05)),
        cort_mm=cortex_mm(rng, (1.0, 1.8), l5.osteoporotic, layout.scale, spacing),
        osteoporotic=l5.osteoporotic,
    )


def layout_pelvis(
    rng: np.random.Generator, layout: SpineLayout, spacing: Array, appearance: PhantomAppearance
) -> Pelvis | None:
    """Sacrum and ilia of a spine whose L5 is laid out (else None), sizes and angles drawn per
    case and scaled by the patient's size; iliac bone takes the patient's density draws (its
    cortex maps the case's place in ``appearance.cortical_hu`` onto ``ILIAC_CORTEX_HU``)."""
    l5 = next((vt for vt in layout.vertebrae if vt.name == LEVELS[-1]), None)
    if l5 is None:
        return None
    scale = layout.scale
    s1 = place_s1(l5, layout, spacing, rng)
    sacrum = Sacrum(
        s1=s1,
        radius=rng.uniform(*SACRAL_RADIUS_MM) * scale,
        length=rng.uniform(*SACRAL_LENGTH_MM) * scale,
        ala_mm=rng.uniform(*ALA_HALF_WIDTH_MM) * scale,
        foramen_mm=rng.uniform(*FORAMEN_MM) * scale,
    )
    origin = s1.center + s1.geom.h / 2 * s1.rot[:, 2]
    top = sacrum.profile(np.asarray(0.0))
    slope = np.arccos(s1.rot[2, 2])
    # the ala's mid-depth where it meets the origin's axial plane
    anchor_y = (top["front"] + top["back"]) / 2 / np.cos(slope)
    l5_top = l5.center[2] + l5.geom.h / 2 - origin[2]
    # the joint space stays >= ~1 voxel so it survives partial-volume blur
    joint_mm = max(rng.uniform(*SI_JOINT_MM) * scale, 1.05 * spacing.max())
    ilia = []
    for side in (-1.0, 1.0):
        notch = -rng.uniform(*SI_JOINT_DEPTH_MM) * scale
        post = np.deg2rad(rng.uniform(*ILIAC_POST_DEG))
        span = rng.uniform(*ILIAC_HALF_SPAN_MM) * scale
        anchor_x = sacrum.ala_mm - SI_OVERLAP_MM * scale
        ax = (span - anchor_x) / (1 - np.cos(post))
        ilia.append(
            Ilium(
                side=side,
                anchor=np.array([anchor_x, anchor_y]),
                ax=ax,
                ay=ax * rng.uniform(*ILIAC_AP_RATIO),
                post=post,
                ant=np.deg2rad(rng.uniform(*ILIAC_ANT_DEG)),
                crest=l5_top + rng.uniform(*CREST_ABOVE_L5_TOP_MM) * scale,
                notch=notch,
                drift=sacrum.behind(-notch) / -notch,
                wing_mm=rng.uniform(*ILIAC_WING_MM) * scale,
                crest_mm=rng.uniform(*ILIAC_CREST_MM) * scale,
                tuberosity_mm=rng.uniform(*ILIAC_TUBEROSITY_MM) * scale,
            )
        )
    cortical = np.interp(s1.cort_hu, appearance.cortical_hu, ILIAC_CORTEX_HU)
    return Pelvis(
        sacrum=sacrum,
        ilia=(ilia[0], ilia[1]),
        origin=origin,
        rot=np.eye(3),
        joint_mm=joint_mm,
        cartilage_hu=rng.uniform(*CARTILAGE_HU),
        trab_hu=s1.trab_hu * rng.uniform(0.9, 1.1),
        cort_hu=float(cortical * rng.uniform(0.95, 1.05)),
        cort_mm=cortex_mm(rng, ILIAC_CORTEX_MM, s1.osteoporotic, scale, spacing),
        osteoporotic=s1.osteoporotic,
    )
