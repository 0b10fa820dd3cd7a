"""Synthetic thoraco-lumbar spine CT phantoms with vertebral fracture masks.

A case is built in canonical RAS world space (mm) as a tissue label map and an HU field of
adult-size anatomy, passed through a randomised scanner (``form_image``), then stored in the
case's orientation as NIfTI images. Every draw comes from ``PhantomAppearance`` ranges.
A field reaching below L5 shows the sacrum and the ilia (``pelvis``), never fractured.

Mask convention (which voxels are "fracture"): the bone a fracture changes, restricted to
bone and the voxel layer around it, never on a distractor (Schmorl's node, vein channel,
osteophyte):
- compression (wedge, biconcave, crush; Genant grades 1-3): the band of compacted bone
  beneath each collapsed endplate, ``band_mm`` deep, where the endplate dropped by more than
  a fifth of its largest drop;
- burst (central cave-in of the endplates by 20-40 % of the body height, fracture lines, a
  posterior-superior fragment retropulsed a few mm into the canal): the compacted band beneath
  the caved-in superior endplate, the fracture gaps, the space the fragment left and the
  fragment itself;
- cortical line: the break through the cortex and the trabecular bone next to it, one voxel
  wide on each side of the line.
Intact bone, discs, the disc material filling a collapse and the canal are not fracture.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from scipy.ndimage import binary_dilation, center_of_mass, gaussian_filter

from vertebral_fracture.progress import Progress
from vertebral_fracture.vertebrae import TOTALSEGMENTATOR_IDS

from .anatomy import (
    BONE,
    SpineLayout,
    Tissue,
    Vertebra,
    VertebraGeom,
    canal_sdf,
    layout_spine,
    paint_soft_tissue,
    posterior_elements,
    slice_profile,
    vertebra_extent,
)
from .config import PhantomAppearance, PhantomSetParams
from .distractors import LOCAL_KINDS, Distractor, sample_distractor
from .fractures import KIND_PROBS, KINDS, Fracture, intact_body, sample_fracture
from .geometry import Array, Box, cuboid_corners, ellipse_sdf, make_box
from .pelvis import Pelvis, layout_pelvis

_DISTRACTOR_TISSUES = (Tissue.SCHMORL_NODE, Tissue.VEIN_CHANNEL, Tissue.OSTEOPHYTE)
_DISTRACTOR_PROB = 0.45  # per case and local distractor kind
FWHM_PER_SIGMA = 2.3548  # a slice profile's full width at half maximum over its sigma
SHARPEN_SIGMA_MM = 1.0  # scale of the detail an edge-enhancing kernel boosts
# Subchondral bone of the sacrum and ilia: denser than the marrow by this peak HU, fading over
# this depth (mm); vertebrae draw theirs from ``PhantomAppearance.endplate_sclerosis_*``
SUBCHONDRAL_HU = 80.0
SUBCHONDRAL_MM = 1.5
TWIN_SUFFIX = "_intact"  # case id of a fractured case's intact twin: <case>_intact


@dataclass
class Phantom:
    """One synthetic CT case.

    ``ct`` is int16 HU, ``fracture_mask`` uint8 {0, 1}, ``tissue_labels`` uint8 ``Tissue``
    codes (noise-free ground truth of the tissue classes) and ``vertebra_labels`` uint8
    TotalSegmentator vertebra ids (``vertebrae.LABEL_CONVENTIONS``: bone, fracture gaps and
    distractors of each vertebra; the sacrum is S1's, the ilia are no vertebra's), all with
    the same shape and affine in the stored
    ``orientation``. Each entry of ``fractures`` gives the fracture's ``kind``,
    ``vertebra``, mask ``voxels`` and ``centroid_mm`` (world coordinates of its mask's centre,
    ``None`` when no voxel of it survived), so lesions found in the mask can be traced back
    to their kind. ``appearance`` records what the case drew from ``PhantomAppearance``
    (levels whose centre is in view, patient size, their mean trabecular HU, scanner settings,
    grid spacing)
    and its sagittal profile (the whole spine's Cobb angles of lordosis L1-S1 and kyphosis
    T4-T12 and its sacral slope, in degrees, whatever the field shows). An intact twin
    (``twin_of`` names its fractured case) is that case drawn without its fractures; a
    ``training_only`` case (``PhantomSetParams.training_only``) never validates or tests.
    """

    case_id: str
    ct: nib.Nifti1Image
    fracture_mask: nib.Nifti1Image
    fractures: list[dict]
    distractors: list[str]
    orientation: str
    tissue_labels: nib.Nifti1Image
    appearance: dict
    vertebra_labels: nib.Nifti1Image
    twin_of: str | None = None
    training_only: bool = False


@dataclass
class Canvas:
    """Canonical (X, Y, Z) volumes being painted: labels, HU, fracture ids (1-based) and
    vertebra ids (TotalSegmentator's)."""

    labels: Array
    hu: Array
    fracture_ids: Array
    vertebra_ids: Array
    origin: Array
    spacing: Array
    fine: Array  # unit-variance band-limited noise, trabecular texture
    coarse: Array  # unit-variance low-frequency noise, soft-tissue heterogeneity

    def box(self, center: Array, rot: Array, lo: Array, hi: Array) -> Box | None:
        """Crop of the canvas covering a local cuboid, see ``geometry.make_box``."""
        return make_box(self.labels.shape, self.origin, self.spacing, center, rot, lo, hi)


def band_noise(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    sigma_vox: Array,
    highpass_vox: Array | None = None,
) -> Array:
    """Unit-variance Gaussian noise low-passed at ``sigma_vox`` (per axis, voxels).

    With ``highpass_vox`` the coarser band is subtracted (difference of Gaussians), giving a
    band-limited texture whose grain matches trabecular bone. Returns float32 of ``shape``.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    field = gaussian_filter(white, sigma_vox, truncate=3.0)
    if highpass_vox is not None:
        field -= gaussian_filter(white, highpass_vox, truncate=3.0)
    return field / max(float(field.std()), 1e-6)


def paint_disc(
    canvas: Canvas,
    upper: Vertebra,
    lower: Vertebra,
    ext_up: float,
    ext_low: float,
    rng: np.random.Generator,
) -> None:
    """Paint the disc between two vertebrae (annulus denser than nucleus).

    The disc fills the space between the upper body's inferior and the lower body's superior
    endplate, each taken in its own vertebra's frame: a wedge where the two are tilted apart
    (the lumbosacral disc). ``ext_up``/``ext_low`` (mm) let the disc fill endplate collapse
    of the adjacent bodies.
    """
    gu, gl = upper.geom, lower.geom
    left, _, right = np.linalg.svd(upper.rot + lower.rot)  # mean rotation (polar decomposition)
    rot = left @ right
    center = (upper.center + lower.center) / 2
    top = -gu.h / 2 + gu.cav + 0.5  # in the upper vertebra's frame
    bottom = gl.h / 2 - gl.cav - 0.5  # in the lower one's
    rx, ry = 1.03 * (gu.rx + gl.rx) / 2, 1.03 * (gu.ry + gl.ry) / 2
    rims = [
        (vert.rot @ np.array([su * rx, sv * ry, w]) + vert.center - center) @ rot[:, 2]
        for vert, w in ((upper, top + ext_up), (lower, bottom - ext_low))
        for su in (-1, 1)
        for sv in (-1, 1)
    ]
    lo, hi = np.array([-rx, -ry, min(rims)]) - 1, np.array([rx, ry, max(rims)]) + 1
    box = canvas.box(center, rot, lo, hi)
    if box is None:
        return
    d, rn = ellipse_sdf(box.u, box.v, rx, ry)
    w_up, w_low = box.in_frame(upper.center, upper.rot)[2], box.in_frame(lower.center, lower.rot)[2]
    # Beyond the nominal endplates the disc only fills the (collapsed) body, not its waist.
    beyond = (w_up > top) | (w_low < bottom)
    region = (d > 0) & (w_up <= top + ext_up) & (w_low >= bottom - ext_low)
    region &= ~(beyond & (rn > 0.9))
    nucleus, annulus = rng.uniform(70, 88), rng.uniform(92, 115)
    ring = np.clip((rn - 0.45) / 0.4, 0, 1)
    hu = nucleus + (annulus - nucleus) * ring + 6 * canvas.fine[box.slices]
    canvas.labels[box.slices][region] = Tissue.DISC
    canvas.hu[box.slices][region] = hu[region]


def paint_canal(canvas: Canvas, vert: Vertebra, csf_hu: float) -> None:
    """Paint the spinal canal (CSF) and, down to L1, the spinal cord around one vertebra."""
    g = vert.geom
    half = g.h / 2 + 0.75 * g.disc_h
    lo = np.array([-g.canal_rx, g.canal_v - g.canal_ry, -half]) - 1
    box = canvas.box(
        vert.center, vert.rot, lo, np.array([g.canal_rx, g.canal_v + g.canal_ry, half]) + 1
    )
    if box is None:
        return
    d, rn = canal_sdf(box.u, box.v, g)
    inside = (d > 0) & (np.abs(box.w) <= half)
    labels, hu = canvas.labels[box.slices], canvas.hu[box.slices]
    labels[inside], hu[inside] = Tissue.CSF, csf_hu
    if g.has_cord:
        cord = inside & (rn < 0.55)
        labels[cord], hu[cord] = Tissue.CORD, csf_hu + 25


def add_posterior_elements(box: Box, g: VertebraGeom, d: Array) -> None:
    """Raise ``d`` (crop shape, signed distance in mm) to the vertebra's posterior elements."""
    for part in posterior_elements(g):
        pts, pad = part.extent()
        sub = box.sub(pts, pad + 1.0)
        if sub is not None:
            d[sub] = np.maximum(d[sub], part.sdf(box.u[sub], box.v[sub], box.w[sub]))


def paint_bone(
    labels: Array,
    hu: Array,
    fine: Array,
    bone: Array,
    d: Array,
    end: Array,
    density: Vertebra | Pelvis,
    *,
    sclerosis_hu: float = SUBCHONDRAL_HU,
    sclerosis_mm: float = SUBCHONDRAL_MM,
) -> Array:
    """Paint ``bone`` (bool) of a crop as marrow inside a cortex of ``density.cort_mm``
    (``d``: signed distance in mm), denser under endplates (``end``: distance to the nearer
    one, mm) by ``sclerosis_hu`` fading over ``sclerosis_mm``; HU from ``density``'s
    ``trab_hu``/``cort_hu``, textured by ``fine``. All arrays share the crop's shape; returns
    the cortex (bool)."""
    cortex = bone & (d < density.cort_mm)
    subchondral = sclerosis_hu * np.exp(-np.clip(end, 0, None) / sclerosis_mm)
    labels[bone] = Tissue.OSTEOPOROTIC_TRABECULAR if density.osteoporotic else Tissue.TRABECULAR
    hu[bone] = (density.trab_hu * (1 + 0.4 * fine) + subchondral)[bone]
    labels[cortex] = Tissue.CORTICAL
    hu[cortex] = (density.cort_hu + 60 * fine)[cortex]
    return cortex


def paint_vertebra(
    canvas: Canvas,
    vert: Vertebra,
    fracture: Fracture | None,
    fracture_id: int,
    distractors: list[Distractor],
    rng: np.random.Generator,
    appearance: PhantomAppearance,
) -> None:
    """Paint bone (cortex, trabecular core), fracture and distractors of one vertebra;
    fracture gaps and compacted bone take HU from ``appearance``.

    Fracture mask voxels (restricted to bone or 1 voxel around it, never on distractors) are
    written as ``fracture_id`` into ``canvas.fracture_ids``; the vertebra's TotalSegmentator id
    goes into ``canvas.vertebra_ids`` wherever it paints.
    """
    g = vert.geom
    box = canvas.box(vert.center, vert.rot, *vertebra_extent(g))
    if box is None:
        return
    u, v, w = box.u, box.v, box.w
    d = np.full(u.shape, -np.inf, np.float32)
    end = np.full(u.shape, np.inf, np.float32)
    gap, sclerotic, mask = (np.zeros(u.shape, bool) for _ in range(3))
    half = np.array([g.rx, g.ry, g.h / 2])
    body = box.sub(cuboid_corners(half * [-1.0, -1.3, -1.0], half), 4.0)
    if body is not None:
        ev = (fracture.evaluate if fracture else intact_body)(u[body], v[body], w[body], g)
        d[body], end[body], gap[body], sclerotic[body], mask[body] = (
            ev.d,
            ev.end,
            ev.gap,
            ev.sclerotic,
            ev.mask,
        )
    add_posterior_elements(box, g, d)
    d = np.minimum(d, -canal_sdf(u, v, g)[0])  # the canal is carved out, lined by cortex
    bone = d > 0
    labels, hu, fine = _crop(canvas, box)
    cortex = paint_bone(
        labels,
        hu,
        fine,
        bone,
        d,
        end,
        vert,
        sclerosis_hu=rng.uniform(*appearance.endplate_sclerosis_hu),
        sclerosis_mm=rng.uniform(*appearance.endplate_sclerosis_mm),
    )
    hematoma = gap & ~bone
    labels[hematoma] = Tissue.FRACTURE_GAP
    hu[hematoma] = (rng.uniform(*appearance.fracture_gap_hu) + 10 * fine)[hematoma]
    compacted = sclerotic & bone & ~cortex
    labels[compacted] = Tissue.SCLEROTIC
    compaction = vert.trab_hu + rng.uniform(*appearance.compaction_hu)
    hu[compacted] = (compaction * (1 + 0.15 * fine))[compacted]
    painted = bone | hematoma
    for distractor in distractors:
        for region, tissue, value in distractor.paints(u, v, w, g, bone):
            labels[region] = tissue
            hu[region] = (value + 20 * fine)[region]
            painted |= region
    canvas.vertebra_ids[box.slices][painted] = TOTALSEGMENTATOR_IDS[vert.name]

    if fracture is not None:
        mask &= binary_dilation(np.isin(labels, BONE)) & ~np.isin(labels, _DISTRACTOR_TISSUES)
        canvas.fracture_ids[box.slices][mask] = fracture_id


def paint_pelvis(canvas: Canvas, pelvis: Pelvis) -> None:
    """Paint the sacrum (S1's vertebra id) and the ilia with their sacroiliac joints, only
    where no vertebra or fracture is painted: the pelvis never covers the spine's bone nor
    enters a fracture mask, and the ilia carry no vertebra id."""
    sacrum = pelvis.sacrum
    s1 = sacrum.s1
    box = canvas.box(s1.center, s1.rot, *sacrum.extent())
    if box is not None:
        arch = np.full(box.u.shape, -np.inf, np.float32)
        add_posterior_elements(box, s1.geom, arch)
        d, end = sacrum.sdf(box.u, box.v, box.w, arch)
        bone = (d > 0) & _unclaimed(canvas, box)
        paint_bone(*_crop(canvas, box), bone, d, end, s1)
        canvas.vertebra_ids[box.slices][bone] = TOTALSEGMENTATOR_IDS[s1.name]
    for ilium in pelvis.ilia:
        box = canvas.box(pelvis.origin, pelvis.rot, *ilium.extent())
        if box is None:
            continue
        wing = ilium.sdf(box.u, box.v, box.w)
        u, v, w = box.in_frame(s1.center, s1.rot)
        ala = sacrum.lateral_mass_sdf(u, *sacrum.unrolled(v, w))
        d = np.minimum(wing, -(ala + pelvis.joint_mm))  # stops a joint space short of the ala
        free = _unclaimed(canvas, box)
        labels, hu, fine = _crop(canvas, box)
        paint_bone(labels, hu, fine, (d > 0) & free, d, np.full(d.shape, np.inf), pelvis)
        joint = (wing > 0) & (d <= 0) & (ala <= 0) & free
        labels[joint] = Tissue.SOFT
        hu[joint] = (pelvis.cartilage_hu + 10 * fine)[joint]


def _crop(canvas: Canvas, box: Box) -> tuple[Array, Array, Array]:
    return canvas.labels[box.slices], canvas.hu[box.slices], canvas.fine[box.slices]


def _unclaimed(canvas: Canvas, box: Box) -> Array:
    """Voxels of the crop that no vertebra (nor fracture) has painted."""
    return (canvas.vertebra_ids[box.slices] == 0) & (canvas.fracture_ids[box.slices] == 0)


def case_grid(
    rng: np.random.Generator, params: PhantomSetParams
) -> tuple[tuple[int, int, int], Array]:
    """The case's voxel grid, shape and (x, y, z) spacing (mm): the set's, or one drawn from
    ``params.appearance``'s spacing ranges over the set's field of view."""
    spacing = list(params.spacing_mm)
    if params.appearance.in_plane_spacing_mm is not None:
        spacing[:2] = [float(rng.uniform(*params.appearance.in_plane_spacing_mm))] * 2
    if params.appearance.slice_spacing_mm is not None:
        spacing[2] = float(rng.uniform(*params.appearance.slice_spacing_mm))
    return params.grid_shape(tuple(spacing)), np.asarray(spacing, float)


def case_origin(rng: np.random.Generator, shape: tuple[int, int, int], spacing: Array) -> Array:
    """World position (mm) of voxel (0, 0, 0): volume centred near the table, random z level."""
    centre = np.array([rng.uniform(-20, 20), rng.uniform(-20, 20), rng.uniform(-400, -100)])
    return centre - (np.asarray(shape) - 1) / 2 * spacing


def _fully_visible(vert: Vertebra, canvas: Canvas) -> bool:
    """Whether the vertebra's body, tilted as it is, lies within the field's slices."""
    g = vert.geom
    half = float(np.abs(vert.rot[2]) @ np.array([g.rx, g.ry, g.h / 2]))  # its half height in z
    z0 = canvas.origin[2]
    z1 = z0 + (canvas.labels.shape[2] - 1) * canvas.spacing[2]
    return z0 + half <= vert.center[2] <= z1 - half


def eligible_vertebrae(layout: SpineLayout, canvas: Canvas) -> list[Vertebra]:
    """Vertebrae that may carry a fracture or distractor: in the level range, fully in view."""
    return [vt for vt in layout.vertebrae if vt.in_segment and _fully_visible(vt, canvas)]


def choose_fractures(
    rng: np.random.Generator,
    eligible: list[Vertebra],
    params: PhantomSetParams,
    voxel_mm: float,
) -> dict[str, Fracture]:
    """Map vertebra name -> fracture; none with probability ``fracture_free_fraction``."""
    if params.max_fractures == 0 or not eligible or rng.random() < params.fracture_free_fraction:
        return {}
    weights = np.array([0.55, 0.3, 0.15][: params.max_fractures])
    count = min(int(rng.choice(len(weights), p=weights / weights.sum())) + 1, len(eligible))
    chosen = rng.choice(len(eligible), size=count, replace=False)
    return {
        eligible[i].name: sample_fracture(
            str(rng.choice(KINDS, p=KIND_PROBS)), rng, eligible[i].geom, voxel_mm
        )
        for i in sorted(chosen)
    }


def choose_distractors(
    rng: np.random.Generator,
    eligible: list[Vertebra],
    fractured: set[str],
    voxel_mm: float,
    contrast: bool,
) -> dict[str, list[Distractor]]:
    """Map vertebra name -> local distractors, preferring vertebrae without fracture."""
    intact = [vt for vt in eligible if vt.name not in fractured] or eligible
    out: dict[str, list[Distractor]] = {}
    if not intact:
        return out
    for kind in LOCAL_KINDS:
        if rng.random() < _DISTRACTOR_PROB:
            vert = intact[int(rng.integers(len(intact)))]
            out.setdefault(vert.name, []).append(
                sample_distractor(kind, rng, vert.geom, voxel_mm, contrast)
            )
    return out


def _nifti(data: Array, affine: Array) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def store(data: Array, affine: Array, orientation: str) -> nib.Nifti1Image:
    """NIfTI image of canonical RAS ``data`` (X, Y, Z) re-laid out in ``orientation``.

    The array is flipped/transposed and the affine adjusted so world coordinates are unchanged.
    """
    ornt = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(tuple(orientation)))
    moved = np.ascontiguousarray(apply_orientation(data, ornt))
    return _nifti(moved, affine @ inv_ornt_aff(ornt, data.shape))


def form_image(
    hu: Array, spacing: Array, rng: np.random.Generator, appearance: PhantomAppearance
) -> tuple[Array, dict[str, float]]:
    """What a scanner makes of the ideal HU field ``hu`` (X, Y, Z).

    In-plane point spread, a slice profile along z (thick slices average neighbouring
    anatomy: partial volume), edge enhancement of sharp kernels, then correlated noise.

    Returns:
        int16 HU of ``hu``'s shape, and the drawn scanner settings by name.
    """
    drawn = {
        name: float(rng.uniform(*getattr(appearance, name)))
        for name in ("in_plane_blur_mm", "slice_thickness_mm", "sharpen", "noise_grain_mm")
    }
    drawn["noise_hu"] = float(rng.uniform(*appearance.noise_hu))
    blur = drawn["in_plane_blur_mm"]
    sigma_mm = np.array([blur, blur, drawn["slice_thickness_mm"] / FWHM_PER_SIGMA])
    image = gaussian_filter(hu, sigma_mm / spacing, truncate=3.0)
    if drawn["sharpen"] > 0:
        detail = image - gaussian_filter(image, SHARPEN_SIGMA_MM / spacing, truncate=3.0)
        image += drawn["sharpen"] * detail
    noise = band_noise(rng, hu.shape, drawn["noise_grain_mm"] / spacing)
    image += noise * drawn["noise_hu"]
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), drawn


def generate_phantom(
    case_id: str, seed: int, params: PhantomSetParams, *, twin_of: str | None = None
) -> Phantom:
    """Generate one case, deterministic in ``seed`` (the orientation is drawn independently so
    the same seed gives the same anatomy whatever ``params.orientations`` holds).

    With ``twin_of`` (the case id of the same seed's fractured case) the case is drawn as that
    one, voxel for voxel, except that its fractures are not painted: every draw is the same,
    so the two differ only where a fracture deformed the bone.
    """
    # the pelvis and the grid draw from their own streams: the spine's draws stay those of a
    # pelvis-free case, and a set's cases stay the same when its grid is not drawn
    orient_seq, anatomy_seq, pelvis_seq, grid_seq = np.random.SeedSequence(seed).spawn(4)
    orientation = params.orientations[
        int(np.random.default_rng(orient_seq).integers(len(params.orientations)))
    ]
    rng = np.random.default_rng(anatomy_seq)
    shape, spacing = case_grid(np.random.default_rng(grid_seq), params)
    origin = case_origin(rng, shape, spacing)
    layout = layout_spine(rng, origin, spacing, shape, params.appearance)
    pelvis = layout_pelvis(np.random.default_rng(pelvis_seq), layout, spacing, params.appearance)

    grain = np.maximum(0.45 / spacing, 0.45)  # trabecular grain ~0.5-1.5 mm
    canvas = Canvas(
        labels=np.zeros(shape, np.uint8),
        hu=np.full(shape, -1000.0, np.float32),
        fracture_ids=np.zeros(shape, np.uint8),
        vertebra_ids=np.zeros(shape, np.uint8),
        origin=origin,
        spacing=spacing,
        fine=band_noise(rng, shape, grain, 3 * grain),
        coarse=band_noise(rng, shape, 6.0 * layout.scale / spacing + 0.5),
    )
    x = (origin[0] + np.arange(shape[0]) * spacing[0])[:, None, None]
    y = (origin[1] + np.arange(shape[1]) * spacing[1])[None, :, None]
    z = origin[2] + np.arange(shape[2]) * spacing[2]
    contrast = bool(rng.random() < 0.5)
    paint_soft_tissue(
        canvas.labels,
        canvas.hu,
        x,
        y,
        slice_profile(layout, z),
        canvas.coarse,
        rng,
        layout.scale,
        contrast,
    )

    eligible, voxel_mm = eligible_vertebrae(layout, canvas), float(spacing.min())
    fractures = choose_fractures(rng, eligible, params, voxel_mm)
    distractors = choose_distractors(rng, eligible, set(fractures), voxel_mm, contrast)
    if twin_of is not None:
        fractures = {}
    verts = layout.vertebrae
    column = verts + [pelvis.sacrum.s1] if pelvis else verts
    for upper, lower in zip(column[:-1], column[1:], strict=True):
        ext_up = fractures[upper.name].extension(-1, upper.geom) if upper.name in fractures else 0
        ext_low = fractures[lower.name].extension(1, lower.geom) if lower.name in fractures else 0
        paint_disc(canvas, upper, lower, ext_up, ext_low, rng)
    csf_hu = rng.uniform(0, 15)
    for vert in column:
        paint_canal(canvas, vert, csf_hu)
    names = list(fractures)
    for vert in verts:
        paint_vertebra(
            canvas,
            vert,
            fractures.get(vert.name),
            names.index(vert.name) + 1 if vert.name in fractures else 0,
            distractors.get(vert.name, []),
            rng,
            params.appearance,
        )
    if pelvis:
        paint_pelvis(canvas, pelvis)

    ct, scanner = form_image(canvas.hu, spacing, rng, params.appearance)

    counts = np.bincount(canvas.fracture_ids.ravel(), minlength=len(names) + 1)
    affine = np.diag(np.append(spacing, 1.0))
    affine[:3, 3] = origin
    # world (scanner) coordinates: the same whatever orientation the volume is stored in;
    # a fracture drawn outside the field has no voxels and no centroid
    drawn = [i for i in range(1, len(names) + 1) if counts[i]]
    mass_centres = center_of_mass(canvas.fracture_ids > 0, canvas.fracture_ids, drawn)
    centres = dict(zip(drawn, mass_centres, strict=True))
    centroids = [
        origin + spacing * np.asarray(centres[i]) if i in centres else None
        for i in range(1, len(names) + 1)
    ]
    z_far = origin[2] + (shape[2] - 1) * spacing[2]
    in_view = [vt for vt in column if origin[2] <= vt.center[2] <= z_far] or verts
    found = [f"{d.kind}:{name}" for name, ds in distractors.items() for d in ds]
    if any(vt.osteoporotic for vt in verts):
        found.append("osteoporosis")
    return Phantom(
        case_id=case_id,
        ct=store(ct, affine, orientation),
        fracture_mask=store((canvas.fracture_ids > 0).astype(np.uint8), affine, orientation),
        fractures=[
            {
                "kind": fractures[n].kind,
                "vertebra": n,
                "voxels": int(counts[i + 1]),
                "centroid_mm": None if c is None else [round(float(v), 2) for v in c],
            }
            for i, (n, c) in enumerate(zip(names, centroids, strict=True))
        ],
        distractors=found,
        orientation=orientation,
        tissue_labels=store(canvas.labels, affine, orientation),
        vertebra_labels=store(canvas.vertebra_ids, affine, orientation),
        twin_of=twin_of,
        appearance={
            "levels": [vt.name for vt in in_view],
            "size_scale": round(layout.scale, 3),
            "trabecular_hu": round(float(np.mean([vt.trab_hu for vt in in_view])), 1),
            "lordosis_deg": round(layout.angles.lordosis, 1),
            "kyphosis_deg": round(layout.angles.kyphosis, 1),
            "sacral_slope_deg": round(layout.angles.sacral_slope, 1),
            "spacing_mm": [round(float(s), 3) for s in spacing],
            **{name: round(value, 3) for name, value in scanner.items()},
        },
    )


def generate_phantom_set(params: PhantomSetParams) -> list[Phantom]:
    """Generate ``params.n_cases`` cases, then the ``params.training_only`` cases marked
    ``training_only`` (drawn group by group from ``params.training_only_groups()``); case
    ``i`` uses seed ``params.seed + i``, so adding training-only cases leaves the first
    ``n_cases`` alone.

    With ``params.intact_twins`` each case with a fracture in view is followed by its intact
    twin ``<case>_intact`` (``generate_phantom``'s ``twin_of``).
    """
    drawn_from = [params] * params.n_cases
    for group in params.training_only_groups():
        drawn_from += [group] * group.n_cases
    phantoms = []
    for i, case_params in enumerate(Progress(drawn_from, desc="phantoms", unit="case")):
        case_id, seed = f"{params.case_prefix}_{i:04d}", params.seed + i
        drawn = [generate_phantom(case_id, seed, case_params)]
        if params.intact_twins and any(f["voxels"] for f in drawn[0].fractures):
            twin_id = f"{case_id}{TWIN_SUFFIX}"
            drawn.append(generate_phantom(twin_id, seed, case_params, twin_of=case_id))
        for phantom in drawn:
            phantom.training_only = case_params is not params
        phantoms += drawn
    return phantoms
