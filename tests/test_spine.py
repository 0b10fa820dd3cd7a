"""The spine locator finds the vertebral column on phantoms, behind distractors and on real CT."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import REAL_CT, REAL_CT_VERTEBRAE
from vertebral_fracture.phantoms import (
    PhantomAppearance,
    PhantomSetParams,
    Tissue,
    generate_phantom_set,
)
from vertebral_fracture.planting import planted_cases
from vertebral_fracture.preprocessing import resample, to_canonical
from vertebral_fracture.slicing import (
    VIEW_AXES,
    add_window,
    assemble_volume,
    extract_slices,
    spine_windows,
)
from vertebral_fracture.spine import (
    body_label_map,
    find_vertebral_bodies,
    locate_spine,
    name_levels,
)
from vertebral_fracture.vertebrae import (
    FOUND_BODIES,
    found_body_ids,
    level_names,
    measure_vertebrae,
)

BODY_TISSUES = (Tissue.TRABECULAR, Tissue.OSTEOPOROTIC_TRABECULAR)
VERTEBRA_LABELS = range(26, 34)  # TotalSegmentator: S1 .. T11
LUMBAR_LABELS = range(27, 32)  # L5 .. L1
REAL_VERTEBRA = Path(__file__).parent / "data" / "real_vertebra"
# The located centre is where the models' windows go: 64 px at 1.25 mm, 80 mm square.
CANONICAL_MM = (1.25, 1.25, 1.25)
WINDOW_PX = 64
WINDOW_MM = WINDOW_PX * CANONICAL_MM[0]


@pytest.fixture(scope="module")
def phantoms() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(HU, tissue labels, fracture mask, spacing) of phantoms, each with a fracture, stored in
    several orientations and resampled as the pipelines do (RAS, 1.25 mm); a tight field
    (72 mm) and a wide thick-slice one."""
    cases = []
    for shape, spacing in (((72, 72, 72), (1.0, 1.0, 1.25)), ((176, 176, 40), (0.8, 0.8, 3.5))):
        params = PhantomSetParams(
            n_cases=3,
            shape=shape,
            spacing_mm=spacing,
            seed=3,
            orientations=["RAS", "LPS", "PIR"],
            fracture_free_fraction=0.0,
        )
        for phantom in generate_phantom_set(params):
            ct, mask = to_canonical(phantom.ct, phantom.fracture_mask, CANONICAL_MM)
            tissue = phantom.tissue_labels
            labels = resample(  # nearest neighbour: label codes must not blend
                np.asanyarray(tissue.dataobj), tissue.affine, ct.affine, ct.shape, order=0
            )
            hu, fracture = (np.asanyarray(image.dataobj) for image in (ct, mask))
            cases.append((hu, labels, fracture > 0, np.array(CANONICAL_MM)))
    return cases


def _fracture_outside_window(spine: np.ndarray, mask: np.ndarray, spacing: np.ndarray) -> float:
    """Share of fracture voxels outside the 80 mm axial window around the located centre
    (what the models would never see)."""
    assert mask.any(), "the case has no fracture to check"
    x, y = np.ogrid[: mask.shape[0], : mask.shape[1]]
    outside = 0
    for z in np.flatnonzero(mask.any(axis=(0, 1))):
        dx, dy = np.abs(x - spine[z, 0]) * spacing[0], np.abs(y - spine[z, 1]) * spacing[1]
        outside += np.count_nonzero(mask[:, :, z] & ((dx > WINDOW_MM / 2) | (dy > WINDOW_MM / 2)))
    return outside / np.count_nonzero(mask)


def test_windows_around_the_centre_hold_every_fracture_of_phantoms(phantoms):
    for hu, _, mask, spacing in phantoms:
        spine = locate_spine(hu, spacing)
        assert spine.shape == (hu.shape[2], 2) and spine.dtype == np.float32
        assert _fracture_outside_window(spine, mask, spacing) == 0


@pytest.mark.parametrize("view", list(VIEW_AXES))
def test_every_views_windows_cover_every_fracture_of_phantoms(phantoms, view):
    # the coronal and sagittal tiles follow the spine's mean position over 64 slices of z
    for hu, _, mask, spacing in phantoms:
        size = WINDOW_PX
        stack = extract_slices(
            "c", np.zeros(hu.shape, np.float32), None, view, size, spine=locate_spine(hu, spacing)
        )
        covered = np.zeros(stack.images.shape, np.float32)
        for i, top, left in spine_windows(stack, size):
            add_window(covered, i, top, left, np.ones((size, size), np.float32))
        assert assemble_volume(covered, stack)[mask].min() > 0


@pytest.mark.parametrize(
    "distractor",
    [
        "aorta",
        pytest.param(
            "pelvis",
            marks=pytest.mark.xfail(
                strict=True, reason="known gap: a solid 700 HU lateral block pulls the tracker"
            ),
        ),
    ],
)
def test_centre_stays_on_the_spine_next_to_a_bright_distractor(phantoms, distractor):
    hu, labels, mask, spacing = phantoms[0]
    body = np.isin(labels, BODY_TISSUES)
    bx, by, _ = (np.mean(axis) for axis in np.nonzero(body))
    x, y = np.ogrid[: hu.shape[0], : hu.shape[1]]
    with_distractor = hu.copy()
    if distractor == "aorta":  # 25 mm contrast-filled tube, anterior-left of the body, all z
        front = np.nonzero(body)[1].max()
        tube = ((x - bx - 20 / spacing[0]) * spacing[0]) ** 2 + (
            (y - front - 14 / spacing[1]) * spacing[1]
        ) ** 2 <= 12.5**2
        with_distractor[tube] = 300
    else:  # a dense iliac-wing-like block lateral to the spine over the lower third
        block = (np.abs(x - bx) * spacing[0] > 22) & (np.abs(y - by) * spacing[1] < 15)
        with_distractor[:, :, : hu.shape[2] // 3][np.broadcast_to(block, hu.shape[:2])] = 700
    spine = locate_spine(with_distractor, spacing)
    assert _fracture_outside_window(spine, mask, spacing) == 0


def test_windows_hold_the_fracture_of_a_phantom_whose_iliac_wing_drew_the_tracker():
    # an L4-L5 field 120 mm wide: seeded at the sacrum's bottom, the tracker was drawn onto an
    # iliac wing cut by the field's edge on its way up (half the fracture fell outside)
    params = PhantomSetParams(
        n_cases=3,
        shape=(96, 96, 96),
        spacing_mm=(1.25, 1.25, 1.25),
        seed=3,
        orientations=["RAS", "LPS", "PIR"],
        fracture_free_fraction=0.0,
        appearance=PhantomAppearance(levels=("L4", "L5")),
    )
    phantom = generate_phantom_set(params)[2]
    ct, mask = to_canonical(phantom.ct, phantom.fracture_mask, CANONICAL_MM)
    spine = locate_spine(np.asanyarray(ct.dataobj).astype(np.float32), CANONICAL_MM)
    mask = np.asanyarray(mask.dataobj) > 0
    assert _fracture_outside_window(spine, mask, np.array(CANONICAL_MM)) == 0


def test_windows_hold_the_lumbar_bodies_of_a_real_ct():
    # the front half of each labelled vertebra (its body; labels include posterior elements)
    ct = nib.load(REAL_CT)
    labels = np.asanyarray(nib.load(REAL_CT_VERTEBRAE).dataobj)
    spacing = np.array(ct.header.get_zooms()[:3])
    spine = locate_spine(np.asanyarray(ct.dataobj), spacing)
    for label in LUMBAR_LABELS:
        vertebra = labels == label
        front = np.arange(labels.shape[1])[None, :, None] >= np.median(np.nonzero(vertebra)[1])
        assert _fracture_outside_window(spine, vertebra & front, spacing) == 0, label


def test_windows_hold_a_fracture_planted_into_an_osteoporotic_real_vertebra():
    # real L3 at 1.5 mm: marrow ~50 HU (as dark as muscle), dense posterior elements
    cases = planted_cases(
        REAL_VERTEBRA / "sub-ct_label-22_ct.nii.gz",
        REAL_VERTEBRA / "sub-ct_seg-vert_label-22_msk.nii.gz",
        REAL_VERTEBRA / "sub-ct_seg-subreg_label-22_msk.nii.gz",
        vertebra=22,
        body_subregions=[49, 50],
        plants=[{"shape": "wedge", "height_loss": 0.4}],
    )
    ct = nib.as_closest_canonical(cases["wedge_40_ct"])
    mask = np.asanyarray(nib.as_closest_canonical(cases["wedge_40_fracture"]).dataobj) > 0
    spacing = np.array(ct.header.get_zooms()[:3])
    spine = locate_spine(np.asanyarray(ct.dataobj), spacing)
    assert _fracture_outside_window(spine, mask, spacing) == 0


def _found_within(hu, spacing, affine, truth_labels, truth_affine) -> tuple[int, int, int, int]:
    """(complete graded vertebrae of the truth map, those with a found body within 15 mm,
    found bodies, vertebrae of the truth map but the sacrum)."""
    spine = locate_spine(hu, spacing)
    found = body_label_map(hu, spacing, spine, find_vertebral_bodies(hu, spacing, spine))
    centres = [
        np.array([r["x_mm"], r["y_mm"], r["z_mm"]])
        for r in measure_vertebrae(found, affine, "numbered")
    ]
    rows = measure_vertebrae(truth_labels, truth_affine, "totalsegmentator")
    truth = [
        np.array([r["x_mm"], r["y_mm"], r["z_mm"]])
        for r in rows
        if r["grade"] is not None  # complete, and a body (not the sacrum)
    ]
    near = [min(np.linalg.norm(c - t) for c in centres) <= 15.0 for t in truth if centres]
    in_view = sum(r["vertebra"] != "S1" for r in rows)
    return len(truth), int(sum(near)), len(centres), in_view


def test_bodies_are_found_without_a_label_map_on_the_real_ct():
    ct = nib.as_closest_canonical(nib.load(REAL_CT))
    labels = nib.as_closest_canonical(nib.load(REAL_CT_VERTEBRAE))
    truth, near, found, _ = _found_within(
        np.asanyarray(ct.dataobj, dtype=np.float32),
        ct.header.get_zooms()[:3],
        ct.affine,
        np.asanyarray(labels.dataobj).astype(np.int16),
        labels.affine,
    )
    # L1-L5 complete; the finder's constants are chosen on phantoms, and on real bone each
    # lies within 15 mm of a found body
    assert truth == 5 and near == 5
    assert found <= truth + 7  # the sacrum and pelvis add some


def test_bodies_are_found_without_a_label_map_on_phantoms():
    """>= 90 % of the complete vertebrae within 15 mm of a found body (bench-like fields)."""
    params = PhantomSetParams(
        n_cases=8, shape=(96, 96, 96), spacing_mm=(1.25, 1.25, 1.25), seed=7077
    )
    totals = np.zeros(4, int)
    for phantom in generate_phantom_set(params):
        ct = nib.as_closest_canonical(phantom.ct)
        labels = nib.as_closest_canonical(phantom.vertebra_labels)
        totals += _found_within(
            np.asanyarray(ct.dataobj, dtype=np.float32),
            ct.header.get_zooms()[:3],
            ct.affine,
            np.asanyarray(labels.dataobj).astype(np.int16),
            labels.affine,
        )
    truth, near, found, in_view = totals
    assert near >= 0.9 * truth and found <= in_view


# ------------------------------------------------------------------------------ level names

BLOCK_MM = (2.0, 2.0, 2.0)


def _block_spine(ribs: int, lumbar: int, sacrum: bool) -> tuple[np.ndarray, list[str]]:
    """(X, Y, Z) HU of a spine of blocks at ``BLOCK_MM``: ``ribs`` bodies whose bone reaches
    60 mm sideways (ribs) over ``lumbar`` ones with 25 mm transverse processes, over a sacrum
    (alae 52 mm out, ilia 56-95 mm out); and their true levels from the top (T12 the last
    rib-bearing one, S1 the sacrum)."""
    n = ribs + lumbar + sacrum
    pitch, height = 36.0, 26.0  # mm: a body and its disc, a body
    shape = (130, 70, int((n * pitch + 40) / BLOCK_MM[2]))
    x, y, z = np.meshgrid(
        *(np.arange(k) * d for k, d in zip(shape, BLOCK_MM, strict=True)), indexing="ij"
    )
    x, y = x - 130.0, y - 70.0
    hu = np.full(shape, 40.0, np.float32)
    for i in range(n):
        top = z.max() - 20 - i * pitch
        slab = (z <= top) & (z >= top - height)
        hu[slab & (np.abs(x) <= 20) & (np.abs(y - 5) <= 15)] = 250.0
        reach = 60.0 if i < ribs else 25.0
        hu[slab & (z >= top - 10) & (np.abs(x) <= reach) & (np.abs(y + 14) <= 3)] = 700.0
    names = [f"T{13 - ribs + i}" for i in range(ribs)] + [f"L{i + 1}" for i in range(lumbar)]
    if sacrum:
        top = z.max() - 20 - (n - 1) * pitch
        alae = (z <= top) & (np.abs(x) <= 52) & (np.abs(y - 2) <= 8)
        ilia = (z <= top + 10) & (np.abs(x) >= 56) & (np.abs(x) <= 95) & (np.abs(y + 5) <= 6)
        hu[alae | ilia] = 500.0
        names.append("S1")
    return hu, names


def _named(hu: np.ndarray, spacing) -> tuple[list[tuple[int, int]], list[str | None] | None]:
    spine = locate_spine(hu, spacing)
    bodies = find_vertebral_bodies(hu, spacing, spine)
    return bodies, name_levels(hu, spacing, spine, bodies)


@pytest.mark.parametrize(
    ("ribs", "lumbar", "sacrum"),
    [(3, 3, False), (0, 5, True), (2, 5, True)],
    ids=["ribs", "sacrum", "both"],
)
def test_levels_are_named_from_the_last_rib_and_the_sacrum(ribs, lumbar, sacrum):
    hu, truth = _block_spine(ribs, lumbar, sacrum)
    bodies, names = _named(hu, BLOCK_MM)
    assert len(bodies) == len(truth) and names == truth


def test_the_sacrum_wins_over_the_ribs_with_four_lumbar_vertebrae(caplog):
    hu, _ = _block_spine(2, 4, True)  # T11, T12, then only four lumbar vertebrae
    with caplog.at_level(logging.WARNING, logger="vertebral_fracture.spine"):
        _, names = _named(hu, BLOCK_MM)
    assert names == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]  # counted up from S1
    assert "counting from the sacrum" in caplog.text


def test_bodies_stay_numbered_without_a_rib_or_sacrum_in_view():
    hu, _ = _block_spine(0, 5, False)
    bodies, names = _named(hu, BLOCK_MM)
    assert names is None and found_body_ids(len(bodies), names) == [1, 2, 3, 4, 5]
    # these phantoms' fields end above the sacrum, and neither starts with two bodies whose
    # bone reaches past the ribs' 40 mm (a lumbar field; a thoraco-lumbar one whose first
    # bodies' ribs leave their slices)
    params = PhantomSetParams(n_cases=2, shape=(72, 72, 96), spacing_mm=(1.5, 1.5, 1.5), seed=11)
    for phantom in generate_phantom_set(params):
        ct = nib.as_closest_canonical(phantom.ct)
        _, names = _named(np.asanyarray(ct.dataobj, dtype=np.float32), ct.header.get_zooms()[:3])
        assert names is None


def _names_agree(ct: nib.Nifti1Image, truth: nib.Nifti1Image) -> dict[str, bool]:
    """Name the found bodies of a scan as the pipelines do (canonical grid at
    ``CANONICAL_MM``); per named body fully in view, whether most of its voxels lie in the
    label map's (``truth``, TotalSegmentator ids) vertebra of its name."""
    ct, _ = to_canonical(ct, None, CANONICAL_MM)
    hu = np.asanyarray(ct.dataobj, dtype=np.float32)
    spine = locate_spine(hu, CANONICAL_MM)
    bodies = find_vertebral_bodies(hu, CANONICAL_MM, spine)
    names = name_levels(hu, CANONICAL_MM, spine, bodies)
    assert names is not None
    found = body_label_map(hu, CANONICAL_MM, spine, bodies, found_body_ids(len(bodies), names))
    truth_labels = resample(
        np.asanyarray(truth.dataobj), truth.affine, ct.affine, hu.shape, order=0
    )
    truth_names = level_names("totalsegmentator")
    agree = {}
    for row in measure_vertebrae(found, ct.affine, FOUND_BODIES):
        if row["complete"]:
            inside = truth_labels[found == row["label"]].astype(np.int64)
            inside = inside[inside > 0]
            agree[row["vertebra"]] = (
                truth_names.get(int(np.bincount(inside).argmax()), "") == (row["vertebra"])
                if inside.size
                else False
            )
    return agree


def test_the_real_ct_levels_agree_with_its_label_map():
    """Found bodies of the real CT, named from its sacrum (its ribs are out of view), lie in
    the label map's vertebrae of their names: most of each body's voxels, for the bodies fully
    in view."""
    agree = _names_agree(nib.load(REAL_CT), nib.load(REAL_CT_VERTEBRAE))
    assert set(agree) == {"T12", "L1", "L2", "L3", "L4", "L5", "S1"}
    assert all(agree.values()), agree


def test_a_thoraco_lumbar_phantom_is_named_from_its_last_rib():
    """A phantom field from T8 to L3 (no sacrum): its floating ribs make T12 the last
    rib-bearing body, and the bodies are named as its label map says. Not every such field
    gets names (``benchmarks/level_naming.py``): the anchor needs the field's first bodies'
    ribs joined to them in their own slices, which oblique or osteoporotic ones may not be."""
    params = PhantomSetParams(
        n_cases=1,
        shape=(128, 112, 200),
        spacing_mm=CANONICAL_MM,
        seed=9102,
        appearance=PhantomAppearance(levels=("T9", "L2")),
    )
    phantom = generate_phantom_set(params)[0]
    agree = _names_agree(phantom.ct, phantom.vertebra_labels)
    assert {"T11", "T12", "L1"} <= set(agree) and all(agree.values()), agree
