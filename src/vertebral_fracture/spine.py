"""Locate the vertebral column in a CT volume: one in-plane centre per axial slice.

A classical, training-free locator. On a block-averaged copy of the scan (~``COARSE_MM``
voxels) a cortex weight is smoothed; the column that is dense along the whole z extent and
near the body's left-right midline seeds a tracker, which follows the bone mass slice by slice
(it sits near the canal: the posterior elements weigh most). At full resolution each centre
then moves forward to a fixed depth behind the column's anterior edge, the front of the
vertebral body, which is cortex in every patient even where the marrow is as dark as muscle.
The curve is smoothed along z. Centres are where the models' windows go (``slicing``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from vertebral_fracture.vertebrae import LEVELS

logger = logging.getLogger(__name__)

#: Working voxel size (mm): enough to resolve a vertebral body (~40 mm), fast on any scan.
COARSE_MM = 2.5
#: Cortex weight (finds the column): 0 below this HU (fat, muscle, blood, osteoporotic marrow).
CORTEX_HU_LOW = 200.0
#: Cortex weight is 1 from this HU: cortex, which every vertebra keeps.
CORTEX_HU_HIGH = 700.0
#: The cortex weight rises as this power of its HU ramp, so thin dense cortex outweighs solid,
#: moderately bright tissue: a contrast-filled aorta (~300 HU) weighs 0.04, cortex ~1.
CORTEX_EXPONENT = 2.0
#: The centre sits this far behind the column's anterior edge: half a lumbar body's depth
#: (thoracic ~25 mm deep, lumbar ~35-40 mm), so it lands on the body.
BODY_CENTRE_MM = 18.0
#: Half width (mm) of the band around the column's midline where the anterior edge is sought:
#: the body's front, not the transverse processes, ribs or psoas beside it.
FRONT_BAND_MM = 8.0
#: How far (mm) in front of the tracked centre (which the posterior elements pull back to the
#: canal) the body's anterior wall may lie: a large lumbar body and canal.
FRONT_REACH_MM = 70.0
#: The front is where this percentile of each half band (left, right of the midline) is still
#: bone: most of the band's width, as the body's front wall is, not a vessel or plaque beside it.
FRONT_PERCENTILE = 80.0
#: A voxel this dense is bone (thin cortex at partial volume stays above it; muscle, blood and
#: noise stay below, except contrast-filled vessels).
FRONT_HU = 180.0
#: Running median of the front's depth along z (mm): shorter than a vertebra, longer than the
#: stray edge of a vessel, plaque or endplate in a few slices.
FRONT_MEDIAN_MM = 15.0
#: Above this HU a voxel is inside the body (soft tissue, not air or lung); sets the midline.
BODY_HU = -300.0
#: In-plane smoothing (mm): merges cortex, marrow and posterior elements into one blob.
SIGMA_PLANE_MM = 7.0
#: Smoothing along z (mm): bridges the discs (~10 mm) between vertebral bodies.
SIGMA_Z_MM = 12.0
#: Width (mm) of the prior toward the body's left-right midline: ribs, iliac wings and arms
#: lie farther out, a scoliotic spine rarely more than a few centimetres.
MIDLINE_SIGMA_MM = 50.0
#: A coarse block is bone for the compactness test above this mean cortex weight: a thin
#: cortex crossing it (a quarter of its voxels at ~300 HU) closes the body's ring.
COMPACT_BONE_WEIGHT = 0.01
#: Bone survives an opening with a disk of this radius (mm) where it is thicker than twice it
#: in every in-plane direction: a vertebral body (>= ~25 mm deep), the sacrum; not an iliac
#: wing (fossa 5-9 mm, crest 9-14 mm), a rib or a process.
COMPACT_RADIUS_MM = 8.0
#: Seed weight of bone far from compact bone, relative to the body's (~1): the iliac wings,
#: whose cortex outweighs an osteoporotic column's, no longer draw the seed.
COMPACT_FLOOR = 0.2
#: The seed's column is scored by this percentile of its weight along z, not the mean: the
#: column runs through every slice, the pelvis (dense, but only below L4-L5) does not.
SEED_PERCENTILE = 25.0
#: Tracking search radius (mm): the column moves little from one slice to the next, while the
#: aorta, ribs and iliac wings mostly lie farther from its centre.
TRACK_RADIUS_MM = 35.0
#: Within the search disk only density above this fraction of its maximum counts, so a weaker
#: neighbour (contrast vessel, rib head) does not drag the centre.
TRACK_PEAK_FRACTION = 0.5
#: Slices whose smoothed bone weight stays below this carry no vertebra: the centre is carried
#: over from the neighbouring slice.
MIN_DENSITY = 0.02
#: Smoothing of the final curve along z (mm): the column bends over vertebrae, not within one.
SMOOTH_Z_MM = 10.0


def locate_spine(hu: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """Centre of the vertebral column in every axial slice.

    Args:
        hu: (X, Y, Z) canonical RAS volume in Hounsfield units.
        spacing_mm: (3,) voxel size in mm along x, y, z (extra entries are ignored).

    Returns:
        (Z, 2) float32 (x, y) voxel coordinates of the column centre (the vertebral body's
        centre where one is cut, bridged over discs) per axial slice z; slices without a
        vertebra get the nearest located centre.
    """
    spacing = np.asarray(spacing_mm, dtype=float)[:3]
    factors = np.maximum(1, np.round(COARSE_MM / spacing)).astype(int)
    coarse_mm = spacing * factors
    hu = np.asarray(hu, dtype=np.float32)
    sigma = np.array([SIGMA_PLANE_MM, SIGMA_PLANE_MM, SIGMA_Z_MM]) / coarse_mm
    ramp = np.clip((hu - CORTEX_HU_LOW) / (CORTEX_HU_HIGH - CORTEX_HU_LOW), 0, 1)
    blocks = _block_mean(ramp**CORTEX_EXPONENT, factors)
    cortex = ndimage.gaussian_filter(blocks, sigma=sigma)
    # the seed prefers bone near a compact mass to thin bone (iliac wings, ribs, processes);
    # the tracker keeps the plain weight (weighting it too moved the real CT's centres below
    # S1 forward and shifted its level names by two)
    gain = COMPACT_FLOOR + ndimage.gaussian_filter(_compact_bone(blocks, coarse_mm), sigma)
    body = _block_mean((hu > BODY_HU).astype(np.float32), factors)
    seed = _seed(cortex * gain, body, coarse_mm[0])
    track = _track(cortex, seed, TRACK_RADIUS_MM / coarse_mm[:2])
    centres = _front_referenced(hu, track, spacing, factors)
    sigma = SMOOTH_Z_MM / spacing[2]
    return ndimage.gaussian_filter1d(centres, sigma, axis=0, mode="nearest").astype(np.float32)


def _compact_bone(blocks: np.ndarray, coarse_mm: np.ndarray) -> np.ndarray:
    """Coarse (Xc, Yc, Zc) float32, 1 on bone that is thick in every in-plane direction (a
    vertebral body, its cortical ring filled per slice; the sacrum), 0 on thin plates (iliac
    wings, ribs, processes) and on bone cut open by the field's edge.

    ``blocks`` is the coarse, unsmoothed cortex weight; the bone mask (blocks above
    ``COMPACT_BONE_WEIGHT``), closed by one voxel, has its holes filled slice by slice and is
    opened with a disk of radius ``COMPACT_RADIUS_MM``. Where the marrow is as dark as muscle
    and the ring stays open (thick slices, osteoporosis) the body is not compact: the weight is
    a cue that helps where it is seen, the cortex weight still finds the column elsewhere.
    """
    bone = blocks >= COMPACT_BONE_WEIGHT
    in_plane = ndimage.generate_binary_structure(2, 1)[:, :, None]  # slice by slice
    bone = ndimage.binary_closing(bone, structure=in_plane)  # a ring broken at partial volume
    filled = ndimage.binary_fill_holes(bone, structure=in_plane)
    r = COMPACT_RADIUS_MM / coarse_mm[:2]
    gx, gy = np.ogrid[-int(r[0]) : int(r[0]) + 1, -int(r[1]) : int(r[1]) + 1]
    disk = ((gx / r[0]) ** 2 + (gy / r[1]) ** 2 <= 1)[:, :, None]
    return ndimage.binary_opening(filled, structure=disk).astype(np.float32)


def _disk(shape: tuple[int, int], centre: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """(X, Y) bool: voxels within the ellipse of ``radius`` (2,) voxels around ``centre``."""
    gx, gy = np.ogrid[: shape[0], : shape[1]]
    return ((gx - centre[0]) / radius[0]) ** 2 + ((gy - centre[1]) / radius[1]) ** 2 <= 1


def _centroid(weight: np.ndarray) -> np.ndarray:
    """(2,) weighted mean (x, y) voxel position of an (X, Y) weight with a positive sum."""
    gx, gy = np.ogrid[: weight.shape[0], : weight.shape[1]]
    return np.array([(gx * weight).sum(), (gy * weight).sum()]) / weight.sum()


def _front_referenced(
    hu: np.ndarray, track: np.ndarray, spacing: np.ndarray, factors: np.ndarray
) -> np.ndarray:
    """(Z, 2) full-resolution centres, moved along y onto the vertebral body:
    ``BODY_CENTRE_MM`` behind the column's anterior edge: the front-most row within
    ``FRONT_REACH_MM`` in front of the tracked centre where both halves of the midline band
    are bone (``FRONT_PERCENTILE`` of their voxels above ``FRONT_HU``).

    The body's anterior wall is cortex in every patient, while its marrow may be as dark as
    muscle (osteoporosis) and the posterior elements outweigh the body: a centroid is pulled
    back to the canal, the front edge is not. Works at full resolution, where a thin cortex
    still stands out. A disc's annulus is no bone: a slice without a front takes the depth of
    the front (behind it, the tracked centre) from its neighbours, and the depth is a running
    median over ``FRONT_MEDIAN_MM``, so one slice's stray edge does not bend the curve. Where
    no slice shows a front the tracked centre stays.
    """
    full = (track + 0.5) * factors[:2] - 0.5
    per_slice = full[np.minimum(np.arange(hu.shape[2]) // factors[2], len(full) - 1)]
    band = FRONT_BAND_MM / spacing[0]
    x, y = np.arange(hu.shape[0]), np.arange(hu.shape[1])
    depth = np.full(hu.shape[2], np.nan)  # front minus tracked centre, voxels along y
    for z, (cx, cy) in enumerate(per_slice):
        ahead = (y >= cy) & (y <= cy + FRONT_REACH_MM / spacing[1])
        fronts = []
        for rows in ((x >= cx - band) & (x <= cx), (x >= cx) & (x <= cx + band)):
            if not rows.any():  # the half band lies outside the volume
                continue
            wide = np.percentile(hu[rows, :, z], FRONT_PERCENTILE, axis=0) >= FRONT_HU
            bright = np.nonzero(ahead & wide)[0]
            if bright.size:
                fronts.append(bright.max())
        # the body's front wall spans both halves of the band; a contrast-filled aorta or a
        # calcified plaque in front of it does not: the nearer of the two fronts is the body's
        if len(fronts) == 2:
            depth[z] = min(fronts) - cy
    found = np.nonzero(~np.isnan(depth))[0]
    if found.size == 0:
        return per_slice.astype(np.float64)
    depth = np.interp(np.arange(hu.shape[2]), found, depth[found])
    window = max(int(round(FRONT_MEDIAN_MM / spacing[2])) | 1, 1)
    depth = ndimage.median_filter(depth, size=window, mode="nearest")
    centres = per_slice.astype(np.float64)
    centres[:, 1] += depth - BODY_CENTRE_MM / spacing[1]
    return centres


def _block_mean(volume: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(X, Y, Z) -> (ceil(X/fx), ceil(Y/fy), ceil(Z/fz)) means of blocks; edges repeated."""
    pad = [(0, -n % f) for n, f in zip(volume.shape, factors, strict=True)]
    padded = np.pad(volume, pad, mode="edge")
    shape = [s for n, f in zip(padded.shape, factors, strict=True) for s in (n // f, f)]
    return padded.reshape(shape).mean(axis=(1, 3, 5))


def _seed(density: np.ndarray, body: np.ndarray, x_mm: float) -> tuple[int, int, int]:
    """(x, y, z) coarse voxel where the tracker starts: the column of bone that persists along
    z (its ``SEED_PERCENTILE``; ribs and the pelvis do not), near the body's left-right
    midline; z where that column is densest."""
    x = np.arange(density.shape[0])
    weights = body.sum(axis=(1, 2))
    midline = float((x * weights).sum() / weights.sum()) if weights.sum() else x.mean()
    prior = np.exp(-0.5 * ((x - midline) * x_mm / MIDLINE_SIGMA_MM) ** 2)
    score = np.percentile(density, SEED_PERCENTILE, axis=2) * prior[:, None]
    if score.max() < MIN_DENSITY:  # no bone anywhere: start mid-volume rather than a corner
        return tuple(n // 2 for n in density.shape)  # type: ignore[return-value]
    cx, cy = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(cx), int(cy), int(np.argmax(density[cx, cy]))


def _track(density: np.ndarray, seed: tuple[int, int, int], radius: np.ndarray) -> np.ndarray:
    """(Z, 2) coarse (x, y) centre per slice, followed from the seed slice up and down; each
    centre is the centroid of the strong density within ``radius`` (coarse voxels, (2,)) of
    the previous slice's centre."""
    nz = density.shape[2]
    track = np.zeros((nz, 2))
    x0, y0, z0 = seed
    for order in (range(z0, nz), range(z0, -1, -1)):
        centre = np.array([x0, y0], dtype=float)
        for z in order:
            local = np.where(_disk(density.shape[:2], centre, radius), density[:, :, z], 0.0)
            peak = local.max()
            if peak >= MIN_DENSITY:
                centre = _centroid(np.clip(local - TRACK_PEAK_FRACTION * peak, 0, None))
            track[z] = centre
    return track


# --------------------------------------------------------------------------- vertebral bodies

#: Half width, and reach behind and in front of the located centre (mm), of the box whose mean
#: density profiles the column along z: inside the body, clear of pedicles and the aorta.
PROFILE_HALF_WIDTH_MM = 15.0
PROFILE_BACK_MM = 10.0
PROFILE_FRONT_MM = 14.0
#: HU range the profile averages over (caps cortex and metal, floors air).
PROFILE_HU = (-100.0, 700.0)
#: Discs are the profile's minima at least this far apart (mm; bodies are 20-35 mm tall) ...
MIN_BODY_MM = 18.0
#: ... that dip by this share of the profile's range (5th to 95th percentile).
DISC_PROMINENCE = 0.1
#: A body between two discs is at least this tall (mm); one cut by the volume's edge at least
#: this tall to count.
MIN_SEGMENT_MM = 15.0
MIN_EDGE_SEGMENT_MM = 22.0
#: Box of a found body (mm around the located centre; the centre sits ~18 mm behind the front).
BODY_HALF_WIDTH_MM = 24.0
BODY_BACK_MM = 20.0
BODY_FRONT_MM = 24.0
#: Bone of a found body (HU): cortex and dense marrow; the closed cortical ring adds the rest.
BODY_BONE_HU = 150.0


def find_vertebral_bodies(
    hu: np.ndarray, spacing: Sequence[float], spine: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """Axial slice ranges of the vertebral bodies, from the top (superior) down.

    The mean density of a box inside the body, following the located column
    (``locate_spine``), dips at every disc; the minima at least ``MIN_BODY_MM`` apart with a
    prominence of ``DISC_PROMINENCE`` split the column into bodies. A training-free method
    that needs no label map; ``name_levels`` names them where it can.

    Args:
        hu: (X, Y, Z) CT in HU on a RAS grid (canonical: z superior).
        spacing: (3,) voxel size in mm.
        spine: (Z, 2) column centres, as ``locate_spine`` returns them (computed if None).

    Returns:
        ``(first, last)`` slice indices (inclusive) per body, ordered from the highest.
    """
    from scipy.signal import find_peaks

    spine = locate_spine(hu, spacing) if spine is None else spine
    sx, sy, sz = (float(s) for s in spacing)
    profile = np.zeros(hu.shape[2])
    for z, (cx, cy) in enumerate(spine):
        box = hu[
            _span(cx, PROFILE_HALF_WIDTH_MM / sx, PROFILE_HALF_WIDTH_MM / sx, hu.shape[0]),
            _span(cy, PROFILE_BACK_MM / sy, PROFILE_FRONT_MM / sy, hu.shape[1]),
            z,
        ]
        profile[z] = np.clip(box, *PROFILE_HU).mean() if box.size else PROFILE_HU[0]
    profile = ndimage.gaussian_filter1d(profile, 1.5 / sz)
    low, high = np.percentile(profile, [5, 95])
    discs, _ = find_peaks(
        -profile, distance=max(int(MIN_BODY_MM / sz), 1), prominence=DISC_PROMINENCE * (high - low)
    )
    last = len(profile) - 1
    edges = [0, *discs.tolist(), last]
    bodies = []
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        at_edge = start == 0 or stop == last
        if (stop - start) * sz >= (MIN_EDGE_SEGMENT_MM if at_edge else MIN_SEGMENT_MM):
            # a disc's own slice belongs to neither body
            bodies.append((start + (start in discs), stop - (stop in discs)))
    return bodies[::-1]


def _span(centre: float, before: float, after: float, size: int) -> slice:
    return slice(int(max(round(centre - before), 0)), int(min(round(centre + after) + 1, size)))


def body_label_map(
    hu: np.ndarray,
    spacing: Sequence[float],
    spine: np.ndarray,
    bodies: Sequence[tuple[int, int]],
    ids: Sequence[int] | None = None,
) -> np.ndarray:
    """(X, Y, Z) int16 map of found bodies: body i has ``ids[i]`` (0 leaves it out), by default
    1, 2, ... from the top (``vertebrae.found_body_ids`` gives named ones).

    Each body is its bone (``BODY_BONE_HU``, the cortical ring filled per slice) inside a box
    around the located column over its slice range.
    """
    sx, sy, _ = (float(s) for s in spacing)
    labels = np.zeros(hu.shape, np.int16)
    ids = range(1, len(bodies) + 1) if ids is None else ids
    for number, (start, stop) in zip(ids, bodies, strict=True):
        if not number:
            continue
        for z in range(start, stop + 1):
            cx, cy = spine[z]
            xs = _span(cx, BODY_HALF_WIDTH_MM / sx, BODY_HALF_WIDTH_MM / sx, hu.shape[0])
            ys = _span(cy, BODY_BACK_MM / sy, BODY_FRONT_MM / sy, hu.shape[1])
            bone = ndimage.binary_fill_holes(ndimage.binary_closing(hu[xs, ys, z] >= BODY_BONE_HU))
            labels[xs, ys, z][bone] = number
    return labels


# --------------------------------------------------------------------------------- levels

#: Bone (HU) of ribs, processes and the pelvis: cortex of thin bone at partial volume (muscle
#: and unenhanced blood stay below).
LATERAL_BONE_HU = 200.0
#: Bone beside a body is sought no farther than this in front of the located centre (mm):
#: ribs, transverse processes and the sacral alae lie behind it; the aorta and the iliac
#: arteries (contrast up to ~400 HU) in front of the bodies do not.
LATERAL_FRONT_MM = 5.0
#: A body's own bone in each slice: within this half width (mm) of the centre, from this far
#: behind it (the posterior wall and pedicles, where ribs and processes attach).
SEED_HALF_WIDTH_MM = 12.0
SEED_BACK_MM = 8.0
#: A rib continues farther than this from the column's centre (mm) in its vertebra's slices,
#: bone joined to the vertebra (head, neck, shaft), beyond the transverse processes of T12-L2
#: (<= ~35 mm) ...
RIB_REACH_MM = 40.0
#: ... and a body whose joined bone stays within this is rib-free (L1's short processes and a
#: body <= ~25 mm half wide). Reaches in between tell nothing: no rib anchor is taken there.
RIB_FREE_MM = 30.0
#: The field must start with at least this many rib-bearing bodies (T11 and T12 carry ribs in
#: everyone): one body's bone reaching far is as likely a vessel or a cut-off rib above.
MIN_RIB_BODIES = 2
#: The sacral alae: bone on both sides between these distances from the centre (mm) at the
#: body's depth (``ALA_BAND_MM`` around the centre, in front of the lumbar transverse
#: processes): beyond the widest lumbar body (half width <= ~28 mm), within the sacrum
#: (~50 mm half wide at S1).
ALA_MM = (35.0, 50.0)
ALA_BAND_MM = (-8.0, 12.0)
#: The ilia: bone on both sides this far out (mm), beside and behind the body; the pelvis
#: flanks the sacrum and whatever the scan shows below it.
ILIUM_MM = (60.0, 100.0)
ILIUM_BAND_MM = (-40.0, 20.0)
#: A body counts as flanked (by alae, by ilia) over at least this height of its slices (mm):
#: the alae are 30-40 mm tall at S1; a slice where an L5 transverse process touches is not.
FLANKED_MIN_MM = 10.0
#: A body's reach is the one its bone keeps over this height (mm) of its slices, not one
#: slice's (a vessel or the next rib bridging once).
REACH_HEIGHT_MM = 5.0


def name_levels(
    hu: np.ndarray,
    spacing: Sequence[float],
    spine: np.ndarray,
    bodies: Sequence[tuple[int, int]],
) -> list[str | None] | None:
    """Level names of found bodies from two anatomical anchors, or None where neither is seen.

    * Sacrum: the topmost of the lowest bodies flanked by the sacral alae (``ALA_MM``), with
      only pelvis (``ILIUM_MM``) below it and an unflanked body above it, is S1; the bodies
      above count up from L5.
    * Ribs: where the field starts with ``MIN_RIB_BODIES`` or more rib-bearing bodies (bone
      reaching beyond ``RIB_REACH_MM``, ``lateral_reach``) and the next body is clearly
      rib-free (within ``RIB_FREE_MM``), the last rib-bearing one is T12; the bodies below
      count down from L1.

    Where both are seen and disagree, the sacrum is kept (a short 12th rib passes for a
    transverse process, a lumbar rib for a rib) and a warning logged: 4 or 6 lumbar
    vertebrae also make them disagree. Counting assumes that every body between the anchor
    and the one named was found (one missed or split shifts the names).

    Args:
        hu: (X, Y, Z) CT in HU on a RAS grid (canonical: z superior).
        spacing: (3,) voxel size in mm.
        spine: (Z, 2) column centres (``locate_spine``).
        bodies: slice ranges of the bodies from the top (``find_vertebral_bodies``).

    Returns:
        One level name per body from the top (None for a body beyond C1-S1: the sacrum's
        lower segments and the pelvis below it), or None when no anchor is seen.
    """
    anchors = {}
    sacrum = _sacrum(hu, spacing, spine, bodies)
    if sacrum is not None:
        anchors["sacrum"] = LEVELS.index("S1") - sacrum
    t12 = _last_rib_bearing(hu, spacing, spine, bodies)
    if t12 is not None:
        anchors["ribs"] = LEVELS.index("T12") - t12
    if not anchors:
        return None
    if len(set(anchors.values())) > 1:
        logger.warning(
            "The sacrum and the last rib-bearing vertebra disagree on the levels by %d "
            "(lumbar transitional anatomy, or a body missed or split); counting from the sacrum.",
            abs(anchors["ribs"] - anchors["sacrum"]),
        )
    offset = anchors.get("sacrum", anchors.get("ribs"))
    return [
        LEVELS[offset + i] if 0 <= offset + i < len(LEVELS) else None for i in range(len(bodies))
    ]


def _sacrum(
    hu: np.ndarray, spacing: Sequence[float], spine: np.ndarray, bodies: Sequence[tuple[int, int]]
) -> int | None:
    """Index of the body that is S1, or None: the topmost of the run of ala-flanked bodies
    below which every body is pelvis (ilium-flanked), with an unflanked body above it."""
    index = None
    for i in range(len(bodies) - 1, -1, -1):
        alae = _flanked_height(hu, spacing, spine, bodies[i], ALA_MM, ALA_BAND_MM)
        if alae >= FLANKED_MIN_MM:
            index = i
        elif index is not None:
            return index  # the body above the sacrum is not flanked by alae: a lumbar one
        elif _flanked_height(hu, spacing, spine, bodies[i], ILIUM_MM, ILIUM_BAND_MM) < (
            FLANKED_MIN_MM
        ):
            return None  # below the sacrum there is only pelvis
    return None


def _last_rib_bearing(
    hu: np.ndarray, spacing: Sequence[float], spine: np.ndarray, bodies: Sequence[tuple[int, int]]
) -> int | None:
    """Index of the last rib-bearing body (T12) of the run the field starts with, when the
    run is ``MIN_RIB_BODIES`` long and a clearly rib-free body follows it; else None."""
    for i, body in enumerate(bodies):
        reach = lateral_reach(hu, spacing, spine, body)
        if reach < RIB_REACH_MM:
            return i - 1 if i >= MIN_RIB_BODIES and reach <= RIB_FREE_MM else None
    return None


def lateral_reach(
    hu: np.ndarray, spacing: Sequence[float], spine: np.ndarray, body: tuple[int, int]
) -> float:
    """How far (mm) from the column's centre the bone joined to a body reaches sideways.

    Per slice of the body, the bone (``LATERAL_BONE_HU``) behind ``LATERAL_FRONT_MM`` in
    front of the centre that connects to the body's posterior wall and pedicles: transverse
    processes, ribs, the sacral alae and ilia. Each side's reach is the one kept over
    ``REACH_HEIGHT_MM`` of the body's slices (a rotated vertebra shows its two ribs in
    different slices); the body's is the shorter side's.
    """
    sx, sy, sz = (float(s) for s in spacing)
    reaches = []
    for z in range(body[0], body[1] + 1):
        cx, cy = spine[z]
        bone = hu[:, :, z] >= LATERAL_BONE_HU
        bone[:, int(round(cy + LATERAL_FRONT_MM / sy)) + 1 :] = False
        components, _ = ndimage.label(bone)
        seed = components[
            _span(cx, SEED_HALF_WIDTH_MM / sx, SEED_HALF_WIDTH_MM / sx, hu.shape[0]),
            _span(cy, SEED_BACK_MM / sy, LATERAL_FRONT_MM / sy, hu.shape[1]),
        ]
        joined = np.isin(components, seed[seed > 0])
        xs = np.nonzero(joined.any(axis=1))[0]
        reaches.append((cx - xs.min(), xs.max() - cx) if xs.size else (0.0, 0.0))
    kept = min(max(int(np.ceil(REACH_HEIGHT_MM / sz)), 1), len(reaches))
    return float(np.sort(reaches, axis=0)[-kept].min() * sx)


def _flanked_height(
    hu: np.ndarray,
    spacing: Sequence[float],
    spine: np.ndarray,
    body: tuple[int, int],
    lateral_mm: tuple[float, float],
    band_mm: tuple[float, float],
) -> float:
    """Height (mm) of a body's slices with bone (``LATERAL_BONE_HU``) on both sides between
    ``lateral_mm`` from the centre, in the depth band ``band_mm`` (along y) around it."""
    sx, sy, sz = (float(s) for s in spacing)
    x = np.arange(hu.shape[0]) * sx
    flanked = 0
    for z in range(body[0], body[1] + 1):
        cx, cy = spine[z]
        band = hu[:, _span(cy, -band_mm[0] / sy, band_mm[1] / sy, hu.shape[1]), z]
        bone = (band >= LATERAL_BONE_HU).any(axis=1)
        offset = x - cx * sx
        flanked += all(
            bone[(side * offset >= lateral_mm[0]) & (side * offset <= lateral_mm[1])].any()
            for side in (-1, 1)
        )
    return flanked * sz
