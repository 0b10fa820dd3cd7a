"""Vertebrae: level names of label maps, vertebral body morphometry, per-vertebra scores.

A vertebra label map holds one integer id per vertebra on the scan's voxel grid. Three id
conventions are understood (``LABEL_CONVENTIONS``):

* ``totalsegmentator`` (TotalSegmentator v2 "total" task, what the phantoms write):
  26 = S1, 27 = L5 ... 31 = L1, 32 = T12 ... 43 = T1, 44 = C7 ... 50 = C1.
* ``verse`` (VerSe challenge, Sekuboyina et al., Medical Image Analysis 2021): 1-7 = C1-C7,
  8-19 = T1-T12, 20-24 = L1-L5, 25 = L6, 26 = sacrum, 28 = T13.
* ``numbered``: the bodies ``spine.find_vertebral_bodies`` finds in a scan that comes without
  a label map. Where ``spine.name_levels`` tells the levels (sacrum, last rib-bearing
  vertebra), a body's id is ``NAMED_FOUND_OFFSET`` plus its TotalSegmentator id (126 = S1,
  127 = L5 ... 132 = T12 ...); where it cannot, 1, 2, ... = V1, V2, ... from the top.

Morphometry follows the six-point method of radiologists (Genant et al., J Bone Miner Res
1993): anterior, middle and posterior heights of the vertebral body, measured along the
body's own cranio-caudal axis in a mid-sagittal band; the smallest over the largest is the
height ratio, and TotalSegmentator's spine report flags a compression below 0.8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Vertebral levels from the skull down.
LEVELS: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    "S1",
)

#: Convention of the bodies found in a scan given without a label map: each label is a body.
FOUND_BODIES = "numbered"
#: A found body whose level was told has this plus its TotalSegmentator id: clear of the
#: numbers V1-V60, and the level readable in any viewer (127 - 100 = 27 = L5).
NAMED_FOUND_OFFSET = 100

LABEL_CONVENTIONS: dict[str, dict[int, str]] = {
    "totalsegmentator": {50 - i: name for i, name in enumerate(LEVELS[:24])} | {26: "S1"},
    "verse": {i + 1: name for i, name in enumerate(LEVELS[:24])} | {25: "L6", 26: "S1", 28: "T13"},
    # bodies found in the CT without a label map (``spine.find_vertebral_bodies``), from the top
    FOUND_BODIES: {k: f"V{k}" for k in range(1, 61)}
    | {NAMED_FOUND_OFFSET + 50 - i: name for i, name in enumerate(LEVELS[:24])}
    | {NAMED_FOUND_OFFSET + 26: "S1"},
}
#: Level name -> TotalSegmentator id (the phantoms' vertebra label maps).
TOTALSEGMENTATOR_IDS: dict[str, int] = {
    name: label for label, name in LABEL_CONVENTIONS["totalsegmentator"].items()
}

#: Genant's semi-quantitative grade g (1-3) starts at a height loss of ``GRADE_LOSS_MIN[g - 1]``
#: (20-25 % mild, 25-40 % moderate, over 40 % severe).
GRADE_LOSS_MIN: tuple[float, ...] = (0.20, 0.25, 0.40)
#: Levels whose bodies are measured and graded: C1-C2 and the sacrum have no comparable body.
#: Bodies found without a label map (``numbered``, named or not) are not graded either: they
#: have no exact outline.
GRADED_LEVELS: frozenset[str] = frozenset(LEVELS[2:-1]) | {"L6", "T13"}
#: Middle height of an intact body over its walls' (dished endplates; 0.79 of the anterior
#: wall in the real L3 of tests/data/real_vertebra, 0.9 in the phantoms).
NORMAL_MIDDLE_SHARE = 0.85
#: A vertebra's fracture score is the mean of its highest fused voxels over this volume.
SCORE_VOLUME_MM3 = 50.0
#: Fracture voxels (mm^3) a vertebra must hold to count as fractured in the ground truth.
FRACTURED_MIN_MM3 = 10.0


def level_names(convention: str) -> dict[int, str]:
    """Label id -> level name of a convention (see the module docstring)."""
    if convention not in LABEL_CONVENTIONS:
        raise ValueError(
            f"unknown vertebra label convention {convention!r}; "
            f"choose one of {sorted(LABEL_CONVENTIONS)}"
        )
    return LABEL_CONVENTIONS[convention]


def level_rank(name: str) -> float:
    """Sort key of a level name from the skull down: T13 after T12, L6 after L5, found
    bodies V1, V2, ... by number, anything else last."""
    extra = {"T13": LEVELS.index("T12") + 0.5, "L6": LEVELS.index("L5") + 0.5}
    if name in LEVELS:
        return float(LEVELS.index(name))
    if name in extra:
        return extra[name]
    if name.startswith("V") and name[1:].isdigit():
        return float(name[1:])
    return float("inf")


def found_body_ids(count: int, levels: Sequence[str | None] | None = None) -> list[int]:
    """Label ids (``FOUND_BODIES``) of ``count`` found bodies from the top: 1, 2, ... where
    their ``levels`` (``spine.name_levels``) are not told (None), else ``NAMED_FOUND_OFFSET``
    plus each body's TotalSegmentator id, 0 (left out of the map) for a body without a level."""
    if levels is None:
        return list(range(1, count + 1))
    return [NAMED_FOUND_OFFSET + TOTALSEGMENTATOR_IDS[name] if name else 0 for name in levels]


def unknown_labels(labels: np.ndarray, convention: str) -> list[int]:
    """The non-zero ids of ``labels`` that ``convention`` does not name (sorted)."""
    names = level_names(convention)
    return [int(v) for v in np.unique(labels) if v != 0 and int(v) not in names]


def genant_grade(height_ratio: float) -> int | None:
    """Genant semi-quantitative grade 0-3 from the height ratio (height loss = 1 - ratio):
    below 20 % loss 0, 20-25 % 1, 25-40 % 2, from 40 % 3 (``GRADE_LOSS_MIN``; a boundary
    belongs to the higher grade); None when the ratio was not measured (NaN)."""
    if not np.isfinite(height_ratio):
        return None
    loss = round(1.0 - float(height_ratio), 9)  # 1 - 0.8 is 0.19999... in binary
    return int(np.searchsorted(GRADE_LOSS_MIN, loss, side="right"))


@dataclass(frozen=True)
class BodyMorphometry:
    """Anterior, middle and posterior heights (mm) of a vertebral body and its centroid."""

    centroid_mm: tuple[float, float, float]
    anterior_mm: float
    middle_mm: float
    posterior_mm: float

    @property
    def height_ratio(self) -> float:
        """The heights that fractures lower over the body's tallest wall (NaN when one is
        missing): the anterior height (wedge) and the middle one (biconcave), the latter first
        divided by ``NORMAL_MIDDLE_SHARE`` since dished endplates make an intact body shorter
        in the middle. A posterior wall shorter than the anterior one is the normal shape of
        L5 and is not a loss."""
        heights = (self.anterior_mm, self.middle_mm, self.posterior_mm)
        if not all(np.isfinite(h) and h > 0 for h in heights):
            return float("nan")
        walls = max(self.anterior_mm, self.posterior_mm)
        middle = min(self.middle_mm / NORMAL_MIDDLE_SHARE, walls)
        return min(self.anterior_mm, middle) / walls

    @property
    def grade(self) -> int | None:
        """Genant grade 0-3 of the height ratio (``genant_grade``), None unmeasured."""
        return genant_grade(self.height_ratio)


def vertebral_body(
    vertebra: np.ndarray, affine: np.ndarray, axis: np.ndarray | None = None
) -> np.ndarray:
    """The body of a vertebra mask: its voxels in front of the spinal canal.

    The vertebra is projected along the spine's local ``axis`` onto a grid of the scan's
    in-plane pixel size; the canal is the largest hole that this footprint encloses, and the
    voxels in front of the canal's anterior edge (along world y made orthogonal to ``axis``)
    are the body. Where the arch is cut open (by the field of view) the body ends where bone
    first stops along the footprint's midline, from the front; a mask with neither (a label
    map of bodies only) is returned whole.

    Args:
        vertebra: (X, Y, Z) bool mask of one vertebra.
        affine: (4, 4) voxel-to-world (RAS mm) matrix of the mask.
        axis: world direction of the spine at this vertebra; default world z.
    """
    voxels = np.argwhere(vertebra)
    if len(voxels) == 0:
        return vertebra
    matrix = np.asarray(affine, dtype=np.float64)
    points = voxels @ matrix[:3, :3].T + matrix[:3, 3]
    _, e_ap, e_lr = _spine_frame(axis)
    a, lateral = points @ e_ap, points @ e_lr
    step, step_lr = _sampling_mm(matrix, e_ap), _sampling_mm(matrix, e_lr)
    rows = np.round((a - a.min()) / step).astype(np.int64) + 1  # a one-pixel empty border
    cols = np.round((lateral - lateral.min()) / step_lr).astype(np.int64) + 1
    footprint = np.zeros((rows.max() + 2, cols.max() + 2), bool)
    footprint[rows, cols] = True
    footprint = ndimage.binary_closing(footprint) | footprint  # no holes between samples
    holes, n = ndimage.label(ndimage.binary_fill_holes(footprint) & ~footprint)
    if n:
        canal = np.bincount(holes.ravel())[1:].argmax() + 1
        canal_front_row = np.nonzero(holes == canal)[0].max()
    else:  # the arch is cut open: the body ends where bone first stops along the midline
        middle = int(round((np.median(lateral) - lateral.min()) / step_lr)) + 1
        band = footprint[:, max(middle - 1, 0) : middle + 2].any(axis=1)
        gaps = np.nonzero(~band[: rows.max() + 1])[0]
        gaps = gaps[gaps < rows.max()]
        if len(gaps) == 0 or gaps.max() < 1:
            return vertebra
        canal_front_row = gaps.max()
    canal_front = (canal_front_row - 1 + 0.5) * step + a.min()
    front = a > canal_front
    if not front.any():
        return vertebra
    body = np.zeros_like(vertebra)
    body[tuple(voxels[front].T)] = True
    return body


def _spine_frame(axis: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit cranio-caudal, antero-posterior and lateral world directions at a vertebra:
    ``axis`` (default world z), world y made orthogonal to it, and their cross product."""
    e_si = _unit(np.array([0.0, 0.0, 1.0]) if axis is None else np.asarray(axis, np.float64))
    e_ap = _unit(np.array([0.0, 1.0, 0.0]) - e_si[1] * e_si)
    return e_si, e_ap, np.cross(e_ap, e_si)


def _cranio_caudal_axis(affine: np.ndarray) -> int:
    """The voxel axis nearest to world z (superior)."""
    return int(np.argmax(np.abs(np.asarray(affine)[2, :3])))


def _sampling_mm(affine: np.ndarray, direction: np.ndarray) -> float:
    """Voxel size (mm) of the voxel axis nearest to a world ``direction``: how finely the
    grid samples along it (a thick-slice axis samples coarsely)."""
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    return float(spacing[int(np.argmax(np.abs((matrix / spacing).T @ direction)))])


def _in_plane_mm(affine: np.ndarray) -> np.ndarray:
    """(2,) voxel sizes (mm) of the two axes across the cranio-caudal one (a sagittal
    acquisition's thick slices are one of them)."""
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return np.delete(spacing, _cranio_caudal_axis(affine))


def crop_affine(affine: np.ndarray, crop: tuple[slice, ...]) -> np.ndarray:
    """The affine of the sub-volume ``volume[crop]`` (its voxel 0 is the crop's start)."""
    shifted = np.array(affine, dtype=np.float64)
    start = np.array([s.start or 0 for s in crop], dtype=np.float64)
    shifted[:3, 3] += shifted[:3, :3] @ start
    return shifted


def body_morphometry(
    body: np.ndarray, affine: np.ndarray, axis: np.ndarray | None = None
) -> BodyMorphometry:
    """Heights of a vertebral body along the spine's local axis.

    Heights are the median extent along ``axis`` of the body's voxel columns in three bands
    across the depth (the body's extent along world y, anterior, made orthogonal to ``axis``):
    anterior (5-20 % of the depth from the front), middle (42.5-57.5 %) and posterior
    (80-95 %), within the central 40 % of the width. The axis comes from the neighbouring
    vertebrae (``measure_vertebrae``), not from the body's own shape, which a wedge tilts.

    Args:
        body: (X, Y, Z) bool mask of one vertebral body (see ``vertebral_body``).
        affine: (4, 4) voxel-to-world (RAS mm) matrix.
        axis: world direction of the spine at this body (towards the head); default world z.

    Returns:
        Heights in mm (NaN for a band without voxels) and the body's world centroid.
    """
    voxels = np.argwhere(body).astype(np.float64)
    if len(voxels) == 0:
        raise ValueError("the vertebral body mask is empty")
    matrix = np.asarray(affine, dtype=np.float64)
    points = voxels @ matrix[:3, :3].T + matrix[:3, 3]
    centroid = points.mean(axis=0)
    e_si, e_ap, e_lr = _spine_frame(axis)
    centred = points - centroid
    s, a, lateral = centred @ e_si, centred @ e_ap, centred @ e_lr
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    step_si = float(spacing[_cranio_caudal_axis(matrix)])  # a column's extent misses one voxel
    column_mm = float(_in_plane_mm(matrix).mean())  # a column's cross-section
    front, back = a.max(), a.min()
    depth, width = front - back, lateral.max() - lateral.min()
    # columns along the axis; a band takes whole columns (by their centre), so that an axis
    # oblique to the grid does not cut the columns at the band's edges short
    col_a, col_lr = (np.round(c / column_mm).astype(np.int64) for c in (a, lateral))
    central = np.abs(col_lr * column_mm - np.median(lateral)) <= 0.2 * width

    def height(near: float, far: float) -> float:
        """Median column extent of the band ``near..far`` (shares of the depth from the front)."""
        centre = col_a * column_mm
        band = central & (centre <= front - near * depth) & (centre >= front - far * depth)
        if not band.any():
            return float("nan")
        _, inverse = np.unique(col_a[band] * 1_000_003 + col_lr[band], return_inverse=True)
        top = np.full(inverse.max() + 1, -np.inf)
        bottom = np.full(inverse.max() + 1, np.inf)
        np.maximum.at(top, inverse, s[band])
        np.minimum.at(bottom, inverse, s[band])
        return float(np.median(top - bottom) + step_si)

    return BodyMorphometry(
        centroid_mm=tuple(round(float(c), 2) for c in centroid),
        anterior_mm=height(0.05, 0.20),
        middle_mm=height(0.425, 0.575),
        posterior_mm=height(0.80, 0.95),
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-9:
        raise ValueError(f"cannot normalise the zero vector {vector}")
    return vector / norm


def vertebra_score(scores: np.ndarray, voxel_mm3: float) -> float:
    """Fracture score of one vertebra: the mean of its highest voxel scores over
    ``SCORE_VOLUME_MM3`` (at least one voxel), robust to a single stray voxel.

    Args:
        scores: the fused scores of the vertebra's voxels (any shape).
        voxel_mm3: the volume of one voxel.
    """
    flat = np.asarray(scores, dtype=np.float64).ravel()
    if flat.size == 0:
        return 0.0
    k = int(np.clip(round(SCORE_VOLUME_MM3 / voxel_mm3), 1, flat.size))
    return float(np.partition(flat, flat.size - k)[flat.size - k :].mean())


def vertebra_boxes(labels: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Label id -> bounding box of that vertebra in the label map (ids present only)."""
    ids = np.unique(labels)
    ids = ids[ids > 0].astype(np.int64)
    boxes = ndimage.find_objects(
        labels.astype(np.int64, copy=False), max_label=int(ids.max()) if len(ids) else 0
    )
    return {int(i): boxes[i - 1] for i in ids if boxes[i - 1] is not None}


def measure_vertebrae(labels: np.ndarray, affine: np.ndarray, convention: str) -> list[dict]:
    """Level, body centroid and morphometry of every vertebra of a label map.

    Args:
        labels: (X, Y, Z) integer vertebra label map on the scan's grid.
        affine: (4, 4) voxel-to-world (RAS mm) matrix of the scan.
        convention: label id convention (``LABEL_CONVENTIONS``).

    Returns:
        One dict per vertebra, from the skull down: ``label``, ``vertebra`` (level name),
        ``x_mm, y_mm, z_mm`` (body centroid, world), ``anterior_mm, middle_mm, posterior_mm``,
        ``height_ratio`` (``BodyMorphometry.height_ratio``, or the body's tallest wall over
        its neighbours' mean when lower: a crush), ``grade`` (of the rounded ratio) and
        ``complete`` (False when the vertebra touches the volume's top or bottom, or its body
        any face). Heights and ratio are NaN and the grade
        None for vertebrae the field of view cuts and levels not graded (``GRADED_LEVELS``).
    """
    names = level_names(convention)
    unknown = unknown_labels(labels, convention)
    if unknown:
        raise ValueError(f"vertebra label ids {unknown[:8]} are not {convention} ids")
    si_axis = _cranio_caudal_axis(affine)
    matrix = np.asarray(affine, dtype=np.float64)
    boxes = vertebra_boxes(labels)
    centres = {
        label: np.argwhere(labels[box] == label).mean(axis=0) @ matrix[:3, :3].T
        + crop_affine(matrix, box)[:3, 3]
        for label, box in boxes.items()
    }
    # the spine's local direction: from the vertebra below to the vertebra above, a vertebra
    # the field cuts at its top or bottom standing in for neither (its centroid is off)
    by_height = sorted(centres, key=lambda label: -centres[label][2])
    whole = {
        label: box[si_axis].start > 0 and box[si_axis].stop < labels.shape[si_axis]
        for label, box in boxes.items()
    }
    measured = []
    for i, label in enumerate(by_height):
        box = boxes[label]
        local = crop_affine(matrix, box)
        above = by_height[i - 1] if i > 0 and whole[by_height[i - 1]] else label
        below = by_height[i + 1] if i + 1 < len(by_height) and whole[by_height[i + 1]] else label
        axis = centres[above] - centres[below] if above != below else None
        vertebra = labels[box] == label
        body = vertebra if convention == FOUND_BODIES else vertebral_body(vertebra, local, axis)
        # complete: the vertebra's top and bottom, and its body all round, are in view
        start = np.array([s.start for s in box])
        voxels = np.argwhere(body)
        edge = box[si_axis]
        complete = bool(
            edge.start > 0
            and edge.stop < labels.shape[si_axis]
            and (start + voxels.min(axis=0) > 0).all()
            and (start + voxels.max(axis=0) < np.array(labels.shape) - 1).all()
        )
        measured.append((label, body_morphometry(body, local, axis), complete))
    graded = [
        complete and convention != FOUND_BODIES and names[label] in GRADED_LEVELS
        for label, _, complete in measured
    ]
    walls = [
        max(m.anterior_mm, m.posterior_mm) if ok else np.nan
        for (_, m, _), ok in zip(measured, graded, strict=True)
    ]
    rows = []
    for i, (label, m, complete) in enumerate(measured):
        # a crush lowers the whole body: compare its tallest wall with its neighbours'
        neighbours = [w for w in walls[max(i - 1, 0) : i] + walls[i + 1 : i + 2] if np.isfinite(w)]
        crush = min(walls[i] / np.mean(neighbours), 1.0) if neighbours else 1.0
        ratio = min(m.height_ratio, crush) if graded[i] else np.nan
        heights = (m.anterior_mm, m.middle_mm, m.posterior_mm) if graded[i] else (np.nan,) * 3
        rows.append(
            {
                "label": label,
                "vertebra": names[label],
                "x_mm": m.centroid_mm[0],
                "y_mm": m.centroid_mm[1],
                "z_mm": m.centroid_mm[2],
                **{
                    f"{where}_mm": round(h, 1)
                    for where, h in zip(("anterior", "middle", "posterior"), heights, strict=True)
                },
                "height_ratio": round(ratio, 3),
                "grade": genant_grade(round(ratio, 3)) if graded[i] else None,
                "complete": complete,
            }
        )
    return sorted(rows, key=lambda r: (level_rank(r["vertebra"]), -r["z_mm"]))


def grown_box(box: tuple[slice, ...]) -> tuple[slice, ...]:
    """A bounding box grown by one voxel on every side (slicing clips the far end)."""
    return tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)


def _inside_vertebrae(labels: np.ndarray, volume: np.ndarray, name: str):
    """(label id, the voxels of ``volume`` inside that vertebra grown by one voxel) per
    vertebra: fracture masks reach one voxel around the bone (gaps, the cortex's partial
    volume)."""
    if labels.shape != volume.shape:
        raise ValueError(f"label map shape {labels.shape} != {name} shape {volume.shape}")
    for label, box in vertebra_boxes(labels).items():
        grown = grown_box(box)
        yield label, volume[grown][ndimage.binary_dilation(labels[grown] == label)]


def vertebra_scores(labels: np.ndarray, scores: np.ndarray, voxel_mm3: float) -> dict[int, float]:
    """Label id -> fracture score (``vertebra_score``) of the fused scores inside it, the
    vertebra grown by one voxel (``_inside_vertebrae``)."""
    return {
        label: vertebra_score(inside, voxel_mm3)
        for label, inside in _inside_vertebrae(labels, scores, "score volume")
    }


def fractured_vertebrae(
    labels: np.ndarray, fracture_mask: np.ndarray, voxel_mm3: float
) -> dict[int, bool]:
    """Label id -> whether the ground-truth fracture mask covers at least
    ``FRACTURED_MIN_MM3`` of that vertebra (grown by one voxel, as ``vertebra_scores``)."""
    return {
        label: bool(np.count_nonzero(inside) * voxel_mm3 >= FRACTURED_MIN_MM3)
        for label, inside in _inside_vertebrae(labels, fracture_mask, "fracture mask")
    }
