"""Tests of the synthetic spine CT phantom generator (tiny volumes, fast)."""

from __future__ import annotations

from itertools import pairwise

import nibabel as nib
import numpy as np
import pytest
from matplotlib.figure import Figure
from pydantic import ValidationError
from scipy.ndimage import binary_dilation, binary_erosion

from vertebral_fracture.phantoms import (
    BONE,
    Phantom,
    PhantomAppearance,
    PhantomSetParams,
    Tissue,
    generate_phantom,
    generate_phantom_set,
    phantom_preview_figure,
)
from vertebral_fracture.phantoms.anatomy import (
    BODY_MARGIN_MM,
    LEVELS,
    Vertebra,
    layout_spine,
    level_geom,
    posterior_elements,
)
from vertebral_fracture.phantoms.fractures import (
    COMPRESSION_SHAPES,
    Compression,
    intact_body,
    sample_fracture,
)
from vertebral_fracture.phantoms.pelvis import layout_pelvis
from vertebral_fracture.vertebrae import (
    FRACTURED_MIN_MM3,
    TOTALSEGMENTATOR_IDS,
    fractured_vertebrae,
    level_names,
    measure_vertebrae,
)

SHAPE = (56, 56, 48)  # a real-size lumbar field: 112 x 112 x 120 mm
SPACING = (2.0, 2.0, 2.5)
DEFAULT_LOOK = PhantomAppearance()
ILIUM_FROM_MIDLINE_MM = 20.0  # the ilia: posterior superior iliac spines ~30-40 mm out


def _params(**overrides) -> PhantomSetParams:
    base = dict(n_cases=12, shape=SHAPE, spacing_mm=SPACING, seed=7, orientations=["RAS"])
    return PhantomSetParams(**{**base, **overrides})


def _canonical(img: nib.Nifti1Image) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(img).dataobj)


@pytest.fixture(scope="module")
def phantoms() -> list[Phantom]:
    return generate_phantom_set(_params())


@pytest.fixture(scope="module")
def pooled(phantoms) -> tuple[np.ndarray, np.ndarray]:
    """CT and labels of all cases concatenated (flattened)."""
    ct = np.concatenate([_canonical(p.ct).ravel() for p in phantoms])
    labels = np.concatenate([_canonical(p.tissue_labels).ravel() for p in phantoms])
    return ct, labels


def _interior_hu(phantoms: list[Phantom], tissue: Tissue) -> np.ndarray:
    """HU of voxels whose 6 neighbours share ``tissue`` (away from partial-volume edges)."""
    values = []
    for ph in phantoms:
        labels = _canonical(ph.tissue_labels)
        values.append(_canonical(ph.ct)[binary_erosion(labels == tissue)])
    return np.concatenate(values)


def test_images_are_int16_hu_and_uint8_mask_with_mm_headers(phantoms):
    ph = phantoms[0]
    assert ph.ct.get_data_dtype() == np.int16
    assert ph.fracture_mask.get_data_dtype() == np.uint8
    assert set(np.unique(np.asanyarray(ph.fracture_mask.dataobj))) <= {0, 1}
    assert ph.ct.shape == ph.fracture_mask.shape == ph.tissue_labels.shape == SHAPE
    np.testing.assert_allclose(ph.ct.affine, ph.fracture_mask.affine)
    assert int(ph.ct.header["qform_code"]) == 1 and int(ph.ct.header["sform_code"]) == 1
    assert ph.ct.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(ph.ct.header.get_zooms(), SPACING, rtol=1e-6)


@pytest.mark.parametrize(
    ("tissue", "low", "high"),
    [
        (Tissue.AIR, -1010, -990),
        (Tissue.FAT, -130, -70),
        (Tissue.SOFT, 15, 60),
        (Tissue.MUSCLE, 20, 65),
        (Tissue.DISC, 60, 140),
        (Tissue.CSF, -10, 45),
        (Tissue.TRABECULAR, *DEFAULT_LOOK.trabecular_hu),
        # thin cortex: blur and sharpening spread its drawn HU
        (Tissue.CORTICAL, DEFAULT_LOOK.cortical_hu[0] - 100, DEFAULT_LOOK.cortical_hu[1]),
    ],
)
def test_tissue_hu_medians(phantoms, tissue, low, high):
    values = _interior_hu(phantoms, tissue)
    assert values.size > 50
    assert low <= np.median(values) <= high


def test_bone_is_brighter_than_soft_tissue(pooled):
    ct, labels = pooled
    assert np.median(ct[labels == Tissue.CORTICAL]) > np.median(ct[labels == Tissue.TRABECULAR])
    assert np.median(ct[labels == Tissue.TRABECULAR]) > np.median(ct[labels == Tissue.MUSCLE])


def test_noise_and_texture_are_present(phantoms):
    assert 8 < np.std(_interior_hu(phantoms, Tissue.AIR)) < 40
    assert np.std(_interior_hu(phantoms, Tissue.TRABECULAR)) > 30


def test_fracture_mask_lies_in_bone_and_is_small(phantoms):
    fractured = [p for p in phantoms if p.fractures]
    assert fractured
    for ph in fractured:
        mask = _canonical(ph.fracture_mask) > 0
        bone = np.isin(_canonical(ph.tissue_labels), BONE)
        assert 0 < mask.mean() < 0.02
        assert not (mask & ~binary_dilation(bone)).any()
        assert mask.sum() == sum(f["voxels"] for f in ph.fractures)
        assert all(f["voxels"] > 0 for f in ph.fractures)
        assert {f["kind"] for f in ph.fractures} <= {"compression", "burst", "cortical_line"}


def test_fracture_free_cases_have_empty_masks_and_fraction_follows_params():
    free = [not p.fractures for p in generate_phantom_set(_params(n_cases=24, seed=100))]
    assert 2 <= sum(free) <= 12  # expected 6 of 24 at 0.25
    none = generate_phantom_set(_params(n_cases=3, fracture_free_fraction=1.0))
    assert all(not p.fractures and not np.asanyarray(p.fracture_mask.dataobj).any() for p in none)
    assert all(
        p.fractures
        for p in generate_phantom_set(_params(n_cases=4, seed=3, fracture_free_fraction=0.0))
    )


def test_every_fracture_kind_is_produced_and_counts_respect_max():
    kinds, counts = set(), []
    for ph in generate_phantom_set(
        _params(n_cases=16, seed=50, fracture_free_fraction=0.0, max_fractures=2)
    ):
        kinds |= {f["kind"] for f in ph.fractures}
        counts.append(len(ph.fractures))
    assert kinds == {"compression", "burst", "cortical_line"}
    assert 1 <= min(counts) and max(counts) <= 2


def test_compression_adds_sclerotic_bone_inside_mask():
    params = _params(shape=(48, 48, 48), spacing_mm=(1.2, 1.2, 1.5), fracture_free_fraction=0.0)
    for seed in range(40):
        ph = generate_phantom("c", seed, params)
        if any(f["kind"] == "compression" for f in ph.fractures):
            break
    labels, mask = _canonical(ph.tissue_labels), _canonical(ph.fracture_mask) > 0
    ct = _canonical(ph.ct)
    sclerotic = labels == Tissue.SCLEROTIC
    assert sclerotic.any() and mask[sclerotic].all()
    marrow = np.isin(labels, [Tissue.TRABECULAR, Tissue.OSTEOPOROTIC_TRABECULAR])
    assert np.median(ct[sclerotic]) > np.median(ct[marrow])  # normal or osteoporotic patient


def test_distractors_are_painted_outside_the_mask(phantoms):
    codes = {
        "schmorl_node": Tissue.SCHMORL_NODE,
        "basivertebral_vein": Tissue.VEIN_CHANNEL,
        "osteophyte": Tissue.OSTEOPHYTE,
    }
    seen = set()
    for ph in phantoms:
        labels, mask = _canonical(ph.tissue_labels), _canonical(ph.fracture_mask) > 0
        assert not (mask & np.isin(labels, list(codes.values()))).any()
        for entry in ph.distractors:
            kind = entry.split(":")[0]
            if kind in codes:
                assert (labels == codes[kind]).any(), entry
                seen.add(kind)
            else:
                assert kind == "osteoporosis"
                assert (labels == Tissue.OSTEOPOROTIC_TRABECULAR).any()
    assert seen == set(codes)


def test_fracture_free_cases_also_carry_distractors():
    free = generate_phantom_set(_params(n_cases=6, fracture_free_fraction=1.0))
    assert sum(bool(p.distractors) for p in free) >= 2


def test_osteoporosis_lowers_trabecular_density(phantoms):
    porotic = _interior_hu(phantoms, Tissue.OSTEOPOROTIC_TRABECULAR)
    assert porotic.size > 0
    assert np.median(porotic) < np.median(_interior_hu(phantoms, Tissue.TRABECULAR))


def _body_width_mm(phantom: Phantom, spacing_x: float) -> float:
    """Left-right extent of trabecular bone in the axial slice that holds the most of it."""
    labels = _canonical(phantom.tissue_labels)
    body = np.isin(labels, [Tissue.TRABECULAR, Tissue.OSTEOPOROTIC_TRABECULAR])
    z = int(np.argmax(body.sum(axis=(0, 1))))
    rows = np.nonzero(body[:, :, z].any(axis=1))[0]
    return float((rows.max() - rows.min() + 1) * spacing_x)


def test_vertebrae_keep_adult_size_whatever_the_field_of_view():
    # a field scaled to fit would shrink the vertebrae of a tight crop: one pixel size learnt
    spacing = np.asarray(SPACING)
    layouts = [
        layout_spine(np.random.default_rng(0), np.zeros(3), spacing, shape, PhantomAppearance())
        for shape in ((48, 48, 40), (96, 96, 120))
    ]
    tight, tall = ({vt.name: vt.geom for vt in layout.vertebrae} for layout in layouts)
    assert len(tall) > len(tight) >= 2
    assert all(tight[name] == tall[name] for name in tight)
    for shape in ((48, 48, 40), (96, 96, 80)):
        width = _body_width_mm(generate_phantom("w", 3, _params(shape=shape)), SPACING[0])
        assert 28 <= width <= 75, (shape, width)  # adult thoraco-lumbar body, whatever the field


def test_appearance_ranges_set_noise_and_slice_profile():
    def case(**appearance):
        return generate_phantom("a", 4, _params(appearance=PhantomAppearance(**appearance)))

    quiet, loud = case(noise_hu=(5.0, 5.0)), case(noise_hu=(40.0, 40.0))
    assert np.std(_interior_hu([loud], Tissue.FAT)) > 3 * np.std(_interior_hu([quiet], Tissue.FAT))
    # thick slices average anatomy along z: sharp bone edges along z soften
    silent = {"noise_hu": (0.0, 0.0)}  # compare the anatomy's edges, not noise
    thin = case(slice_thickness_mm=(0.6, 0.6), **silent)
    thick = case(slice_thickness_mm=(6.0, 6.0), **silent)
    steps = [np.abs(np.diff(_canonical(p.ct).astype(float), axis=2)).mean() for p in (thin, thick)]
    assert steps[1] < 0.8 * steps[0]


@pytest.mark.parametrize(
    "appearance",
    [
        {"noise_hu": (30.0, 5.0)},
        {"size_scale": (0.0, 1.0)},
        {"noise_hu": (-5.0, 5.0)},
        {"levels": ("L5", "T9")},
        {"levels": ("T9", "L6")},
    ],
)
def test_invalid_appearance_is_rejected(appearance):
    with pytest.raises(ValidationError):
        PhantomAppearance(**appearance)


def test_same_seed_is_deterministic_and_different_seeds_differ():
    params = _params()
    a, b, c = (generate_phantom("x", s, params) for s in (11, 11, 12))
    for img in ("ct", "fracture_mask", "tissue_labels"):
        np.testing.assert_array_equal(getattr(a, img).get_fdata(), getattr(b, img).get_fdata())
    np.testing.assert_array_equal(a.ct.affine, b.ct.affine)
    assert a.fractures == b.fractures and a.distractors == b.distractors
    assert not np.array_equal(a.ct.get_fdata(), c.ct.get_fdata())


def test_set_uses_consecutive_seeds_and_prefix():
    params = _params(n_cases=2, case_prefix="spine")
    cases = generate_phantom_set(params)
    assert [p.case_id for p in cases] == ["spine_0000", "spine_0001"]
    single = generate_phantom("spine_0001", params.seed + 1, params)
    np.testing.assert_array_equal(cases[1].ct.get_fdata(), single.ct.get_fdata())


def test_training_only_cases_follow_the_set_and_draw_from_their_own_parameters():
    upper = {"n_cases": 2, "spacing_mm": (2.0, 2.0, 3.0), "appearance": {"levels": ("T2", "T4")}}
    params = _params(n_cases=2, training_only=[upper, {"n_cases": 1, "max_fractures": 0}])
    cases = generate_phantom_set(params)
    assert [p.training_only for p in cases] == [False, False, True, True, True]
    assert [p.case_id[-4:] for p in cases] == ["0000", "0001", "0002", "0003", "0004"]
    alone = generate_phantom_set(params.model_copy(update={"training_only": []}))
    for case, same in zip(cases, alone, strict=False):
        np.testing.assert_array_equal(case.ct.get_fdata(), same.ct.get_fdata())
    thoracic = {f"T{i}" for i in range(1, 9)}
    for case in cases[:4]:
        levels = set(case.appearance["levels"])
        assert (levels <= thoracic) == case.training_only, (case.case_id, levels)
        z_mm = nib.as_closest_canonical(case.ct).header.get_zooms()[2]
        assert z_mm == (3.0 if case.training_only else SPACING[2])
    assert cases[2].appearance["noise_hu"] <= params.appearance.noise_hu[1]  # others kept
    last = cases[4]  # the second group: the set's grid and levels, no fractures
    assert last.ct.shape == SHAPE and not last.fractures
    assert not set(last.appearance["levels"]) <= thoracic
    one_group = _params(n_cases=2, training_only=upper)  # a group alone needs no list
    assert one_group.training_only_groups() == params.training_only_groups()[:1]


def test_drawn_grids_vary_per_case_and_keep_the_field():
    look = {"in_plane_spacing_mm": (1.5, 2.5), "slice_spacing_mm": (1.0, 4.0)}
    params = _params(n_cases=3, appearance=look)
    field = (np.array(SHAPE) - 1) * SPACING
    zooms = []
    for case in generate_phantom_set(params):
        canonical = nib.as_closest_canonical(case.ct)
        zoom = np.array(canonical.header.get_zooms())
        assert zoom[0] == zoom[1] and 1.5 <= zoom[0] <= 2.5 and 1.0 <= zoom[2] <= 4.0
        np.testing.assert_allclose(zoom, case.appearance["spacing_mm"], atol=1e-3)
        assert np.all(np.abs((np.array(canonical.shape) - 1) * zoom - field) <= zoom / 2)
        assert case.fracture_mask.shape == case.ct.shape
        zooms.append(tuple(zoom))
    assert len(set(zooms)) == 3
    fixed = generate_phantom("x", 7, _params())
    assert fixed.ct.shape == SHAPE and fixed.appearance["spacing_mm"] == list(SPACING)


@pytest.mark.parametrize(
    ("look", "message"),
    [
        ({"slice_spacing_mm": (0.0, 1.0)}, "must be > 0 mm"),
        ({"in_plane_spacing_mm": (2.0, 1.0)}, "low first"),
        ({"slice_spacing_mm": (1.0, 6.0)}, "coarsest drawn grid"),  # 120 mm in 21 slices
    ],
)
def test_invalid_drawn_grids_are_rejected(look, message):
    with pytest.raises(ValidationError, match=message):
        _params(appearance=look)


@pytest.mark.parametrize(
    "training_only",
    [
        {"n_cases": 1, "appearance": {"levels": ("L5", "T9")}},
        {"n_cases": 1, "appearance": {"noise": (5.0, 10.0)}},
        {"n_cases": 1, "shape": (8, 8, 8)},
        {"n_cases": 1, "seed": 3},
        {"spacing_mm": (1.0, 1.0, 1.0)},
        [{"n_cases": 1}, {"n_cases": 1, "intact_twins": True}],
    ],
)
def test_invalid_training_only_cases_are_rejected_with_the_set(training_only):
    with pytest.raises(ValidationError):
        _params(training_only=training_only)


def test_intact_twins_differ_from_their_fractured_case_only_at_the_fractured_vertebrae():
    cases = generate_phantom_set(_params(n_cases=6, seed=3, intact_twins=True))
    fractured = [p for p in cases if any(f["voxels"] for f in p.fractures)]
    twins = [p for p in cases if p.twin_of]
    assert fractured and len(twins) == len(fractured) < len(cases) - len(twins)
    for case, twin in pairwise(cases):
        if twin.twin_of is None:
            continue
        assert twin.twin_of == case.case_id and twin.case_id == f"{case.case_id}_intact"
        assert not twin.fractures and not _canonical(twin.fracture_mask).any()
        ids = [TOTALSEGMENTATOR_IDS[f["vertebra"]] for f in case.fractures]
        fractured_bone = np.isin(_canonical(case.vertebra_labels), ids)
        # the scanner's blur carries a change a few mm; beyond it the scans are equal
        near = binary_dilation(fractured_bone, iterations=5)
        changed = _canonical(case.ct) != _canonical(twin.ct)
        assert changed[fractured_bone].any() and not changed[~near].any()
        assert case.distractors == twin.distractors


@pytest.mark.parametrize("code", ["LPS", "PIR", "SAR", "ILA"])
def test_orientations_store_the_same_world_anatomy(code):
    ras = generate_phantom("o", 5, _params(orientations=["RAS"]))
    other = generate_phantom("o", 5, _params(orientations=[code]))
    assert other.orientation == code
    assert nib.aff2axcodes(other.ct.affine) == tuple(code)
    for name in ("ct", "fracture_mask", "tissue_labels"):
        ref, img = (
            nib.as_closest_canonical(getattr(ras, name)),
            nib.as_closest_canonical(getattr(other, name)),
        )
        np.testing.assert_array_equal(np.asanyarray(ref.dataobj), np.asanyarray(img.dataobj))
        np.testing.assert_allclose(ref.affine, img.affine, atol=1e-4)
    canon = nib.as_closest_canonical(other.ct)
    np.testing.assert_allclose(canon.header.get_zooms(), SPACING, rtol=1e-6)


def test_permuted_orientation_permutes_shape_and_zooms():
    params = _params(shape=(24, 32, 40), spacing_mm=(0.8, 0.9, 2.0), orientations=["PIR"])
    ph = generate_phantom("p", 1, params)
    assert ph.ct.shape == (32, 40, 24)
    np.testing.assert_allclose(ph.ct.header.get_zooms(), (0.9, 2.0, 0.8), rtol=1e-6)
    canon = nib.as_closest_canonical(ph.ct)
    assert canon.shape == (24, 32, 40)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_fracture_outside_a_tiny_field_is_listed_without_a_centroid():
    # seed 1 in this 19 x 29 x 80 mm field draws one of its two fractures outside the field
    params = _params(shape=(24, 32, 40), spacing_mm=(0.8, 0.9, 2.0), orientations=["PIR"])
    fractures = generate_phantom("p", 1, params).fractures
    outside = [f for f in fractures if f["voxels"] == 0]
    inside = [f for f in fractures if f["voxels"] > 0]
    assert outside and inside
    assert all(f["centroid_mm"] is None for f in outside)
    assert all(len(f["centroid_mm"]) == 3 for f in inside)


def test_world_origin_maps_voxel_centres_to_mm(phantoms):
    ph = phantoms[0]
    affine = nib.as_closest_canonical(ph.ct).affine
    np.testing.assert_allclose(np.diag(affine)[:3], SPACING)
    centre = affine @ np.append((np.array(SHAPE) - 1) / 2, 1.0)
    assert abs(centre[0]) <= 20 and abs(centre[1]) <= 20 and -400 <= centre[2] <= -100


def test_orientation_choice_varies_across_a_set():
    cases = generate_phantom_set(_params(n_cases=12, orientations=["RAS", "LPS", "PIR"]))
    assert len({p.orientation for p in cases}) >= 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"orientations": ["RAX"]},
        {"orientations": ["RRS"]},
        {"orientations": ["RASL"]},
        {"spacing_mm": (-1.0, 1.0, 1.0)},
        {"spacing_mm": (1.0, 0.0, 1.0)},
        {"shape": (16, 40, 40)},
        {"n_cases": 0},
        {"max_fractures": 4},
        {"fracture_free_fraction": 1.5},
        {"unknown": 1},
    ],
)
def test_invalid_params_are_rejected(overrides):
    with pytest.raises(ValidationError):
        _params(**overrides)


def test_orientation_codes_are_normalised_to_upper_case():
    assert _params(orientations=["lps"]).orientations == ["LPS"]


def test_preview_figure_has_three_planes_per_case(phantoms):
    fig = phantom_preview_figure(phantoms, max_cases=2)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6
    fractured = next(p for p in phantoms if p.fractures)
    fig = phantom_preview_figure([fractured])
    assert fractured.fractures[0]["kind"] in fig.axes[0].get_title()
    assert fig.axes[0].collections  # the red mask contour


@pytest.mark.parametrize("code", ["RAS", "PIR"])
def test_manifest_centroids_lie_on_their_fractures_in_any_orientation(code):
    """``centroid_mm`` (world mm) lands on the fracture's voxels whatever the storage order."""
    cases = generate_phantom_set(_params(n_cases=8, orientations=[code], fracture_free_fraction=0))
    for ph in cases:
        mask = np.asanyarray(ph.fracture_mask.dataobj)
        world = nib.affines.apply_affine(ph.fracture_mask.affine, np.argwhere(mask))
        for fracture in ph.fractures:
            if not fracture["voxels"]:
                continue
            nearest = np.linalg.norm(world - fracture["centroid_mm"], axis=1).min()
            assert nearest <= 2 * max(SPACING)  # a wedge's centroid may fall just off its band


def test_compression_shapes_collapse_their_endplates():
    geom = level_geom(LEVELS.index("L2"), 1.0, np.random.default_rng(0))
    u, v, w = np.meshgrid(
        *(np.linspace(-r, r, 41) for r in (geom.rx, geom.ry, geom.h / 2)), indexing="ij"
    )
    base = dict(side=1, loss_mm=0.3 * geom.h, hinge=-0.4, gamma=1.0, band_mm=3.0)
    masks = {
        shape: Compression(**base, ripple_mm=0.0, ripple_phase=0.0, shape=shape)
        .evaluate(u, v, w, geom)
        .mask
        for shape in COMPRESSION_SHAPES
    }
    upper, lower = w > 0, w < 0
    assert masks["wedge"][upper].any() and not masks["wedge"][lower].any()
    assert masks["biconcave"][upper].any() and masks["biconcave"][lower].any()
    assert not masks["crush"][lower].any()
    # a wedge spares the posterior wall; a crush lowers nearly the whole endplate
    posterior = v < -0.6 * geom.ry
    assert not masks["wedge"][posterior].any() and masks["crush"][posterior].any()


def test_a_burst_caves_in_retropulses_its_fragment_and_masks_what_it_changed():
    """Denis burst: central cave-in over compacted bone, a fragment pushed into the canal."""
    geom = level_geom(LEVELS.index("L1"), 1.0, np.random.default_rng(0))
    u, v, w = np.meshgrid(
        *(np.linspace(-1.3 * r, 1.3 * r, 53) for r in (geom.rx, geom.ry, geom.h / 2)),
        indexing="ij",
    )
    voxel_mm = 1.0
    intact = intact_body(u, v, w, geom)
    for seed in range(5):
        burst = sample_fracture("burst", np.random.default_rng(seed), geom, voxel_mm)
        ev = burst.evaluate(u, v, w, geom)
        # retropulsion of at least 1.5 voxels: bone behind the intact posterior wall
        assert -burst.shift[1] >= 1.5 * voxel_mm
        assert ((ev.d > 0) & (intact.d <= 0) & (v < 0)).any()
        # the centre caves in: bone lost near the superior endplate, 20-40 % of the height
        assert 0.2 * geom.h <= burst.depression_mm <= 0.4 * geom.h
        centre = (np.abs(u) < 0.2 * geom.rx) & (np.abs(v) < 0.2 * geom.ry)
        top = w > geom.h / 2 - 0.15 * geom.h
        assert ((intact.d > 0) & (ev.d <= 0) & centre & top).any()
        # compacted bone under the cave-in, inside the mask; the caved-in space (disc) is not
        assert ev.sclerotic.any() and not (ev.sclerotic & ~ev.mask).any()
        caved = (intact.d > 0) & (ev.d <= 0) & ~ev.gap
        assert caved.any() and not (caved & ev.mask).any()


def test_vertebra_label_maps_name_the_levels_in_view_and_hold_each_fracture(phantoms):
    """``<case>_vertebrae``: TotalSegmentator ids on the CT grid, one per vertebra in view;
    every fracture lies in the vertebra the manifest names (``fractured_vertebrae``)."""
    for ph in phantoms:
        labels = _canonical(ph.vertebra_labels)
        assert ph.vertebra_labels.shape == ph.ct.shape
        assert np.allclose(ph.vertebra_labels.affine, ph.ct.affine)
        names = level_names("totalsegmentator")
        present = {names[int(i)] for i in np.unique(labels) if i}
        assert set(ph.appearance["levels"]) <= present  # centres in view; cut ones may add
        bone = np.isin(_canonical(ph.tissue_labels), BONE)
        # all bone is some vertebra's (the sacrum S1's) but the ilia, beside the column
        spine_x = np.median(np.nonzero(labels > 0)[0]) * SPACING[0]
        ilia = bone & (labels == 0)
        assert np.all(np.abs(np.nonzero(ilia)[0] * SPACING[0] - spine_x) > ILIUM_FROM_MIDLINE_MM)
        assert not ilia.any() or {"L5", "S1"} & present
        voxel_mm3 = float(np.prod(SPACING))
        fractured = fractured_vertebrae(labels, _canonical(ph.fracture_mask) > 0, voxel_mm3)
        for fracture in ph.fractures:
            if fracture["voxels"] * voxel_mm3 >= FRACTURED_MIN_MM3:
                assert fractured[TOTALSEGMENTATOR_IDS[fracture["vertebra"]]]
        assert sum(fractured.values()) <= len(ph.fractures)


def test_morphometry_grades_the_phantoms_compressions_and_spares_intact_bodies():
    """Six-point heights on the label maps: compressed bodies lose height, intact ones not
    (but for a few a Schmorl's node or osteophyte deforms: enough cases to tell)."""
    params = _params(
        n_cases=30, shape=(64, 64, 96), spacing_mm=(1.5, 1.5, 1.5), fracture_free_fraction=0.0
    )
    intact, compressed = [], []
    for ph in generate_phantom_set(params.model_copy(update={"seed": 300})):
        rows = measure_vertebrae(
            _canonical(ph.vertebra_labels),
            nib.as_closest_canonical(ph.vertebra_labels).affine,
            "totalsegmentator",
        )
        kinds = {f["vertebra"]: f["kind"] for f in ph.fractures}
        for row in rows:
            if row["grade"] is None:
                continue
            if kinds.get(row["vertebra"]) == "compression":
                compressed.append(row["height_ratio"])
            elif row["vertebra"] not in kinds:
                intact.append(row["grade"])
    assert len(intact) >= 10 and len(compressed) >= 3
    assert np.mean(np.asarray(intact) == 0) >= 0.9
    assert np.median(compressed) < 0.85


def test_fracture_appearance_follows_its_ranges():
    """A faint compacted band (the collapse shows only in the endplate's shape) when asked."""
    look = PhantomAppearance(compaction_hu=(0.0, 10.0), trabecular_hu=(150.0, 160.0))
    params = _params(
        shape=(48, 48, 48),
        spacing_mm=(1.2, 1.2, 1.5),
        fracture_free_fraction=0.0,
        appearance=look,
    )
    for seed in range(40):
        ph = generate_phantom("c", seed, params)
        if any(f["kind"] == "compression" for f in ph.fractures):
            break
    labels, ct = _canonical(ph.tissue_labels), _canonical(ph.ct)
    band = labels == Tissue.SCLEROTIC  # thin: blur mixes in its neighbours, as dense
    assert band.any() and 100.0 < np.median(ct[band]) < 260.0
    with pytest.raises(ValueError, match="low first"):
        PhantomAppearance(fracture_gap_hu=(80.0, 30.0))


def test_endplate_sclerosis_brightens_bone_under_endplates_and_leaves_the_mask():
    """Subchondral sclerosis as bright as a compacted band, drawn on intact vertebrae, never
    enters the fracture mask: brightness under an endplate is no sign of a fracture."""

    def draw(peak_hu: float, seed: int, fracture_free_fraction: float) -> Phantom:
        look = PhantomAppearance(
            endplate_sclerosis_hu=(peak_hu, peak_hu + 0.01), endplate_sclerosis_mm=(2.0, 2.01)
        )
        params = _params(
            shape=(48, 48, 48),
            spacing_mm=(1.0, 1.0, 1.0),
            fracture_free_fraction=fracture_free_fraction,
            appearance=look,
        )
        return generate_phantom("c", seed, params)

    # the same anatomy and fractures, drawn from the same seed: the mask does not move
    fractured = [_canonical(draw(peak, 1, 0.0).fracture_mask) for peak in (0.0, 350.0)]
    assert fractured[0].any()
    np.testing.assert_array_equal(*fractured)

    faint, sclerotic = draw(0.0, 3, 1.0), draw(350.0, 3, 1.0)  # intact vertebrae only
    labels = _canonical(faint.tissue_labels)
    np.testing.assert_array_equal(labels, _canonical(sclerotic.tissue_labels))
    brighter = _canonical(sclerotic.ct).astype(float) - _canonical(faint.ct)
    bright = brighter > 100.0
    assert bright.sum() > 50
    # beneath the endplates, not through the body (inside the field: past its top and bottom
    # the disc under an endplate is not drawn)
    near_disc = binary_dilation(labels == Tissue.DISC, iterations=3)[..., 4:-4]
    assert near_disc[bright[..., 4:-4]].mean() > 0.95


@pytest.fixture(scope="module")
def lumbosacral() -> list[Phantom]:
    """Fields centred on L5, wide enough for the sacroiliac joints (160 x 128 x 120 mm)."""
    look = PhantomAppearance(levels=("L5", "L5"))
    return generate_phantom_set(_params(n_cases=3, seed=40, shape=(80, 64, 48), appearance=look))


def test_a_lumbar_field_shows_the_sacrum_below_l5_and_the_ilia_beside_it(lumbosacral):
    """S1 and the sacrum carry S1's TotalSegmentator id (26) below L5's; bone of no vertebra
    (the ilia) lies to both sides of the sacrum, lateral to it, as plates of cortex around
    marrow; the sacroiliac joints separate the two."""
    for ph in lumbosacral:
        labels, tissue = _canonical(ph.vertebra_labels), _canonical(ph.tissue_labels)
        sacrum, l5 = labels == TOTALSEGMENTATOR_IDS["S1"], labels == TOTALSEGMENTATOR_IDS["L5"]
        assert "S1" in ph.appearance["levels"] and sacrum.sum() * np.prod(SPACING) > 20_000
        z_sacrum, z_l5 = (np.nonzero(m)[2].mean() for m in (sacrum, l5))
        assert z_sacrum < z_l5
        ilia = np.isin(tissue, BONE) & (labels == 0)
        x_ilia = (np.nonzero(ilia)[0] - np.median(np.nonzero(sacrum)[0])) * SPACING[0]
        assert x_ilia.min() < -ILIUM_FROM_MIDLINE_MM and x_ilia.max() > ILIUM_FROM_MIDLINE_MM
        assert np.all(np.abs(x_ilia) > ILIUM_FROM_MIDLINE_MM)
        # a plate, not a block: cortex around marrow, mostly thin
        marrow = np.isin(tissue, [Tissue.TRABECULAR, Tissue.OSTEOPOROTIC_TRABECULAR])
        assert (ilia & marrow).any() and (ilia & (tissue == Tissue.CORTICAL)).any()
        assert binary_erosion(ilia, iterations=3).sum() < 0.25 * ilia.sum()  # 6 mm in
        # sacroiliac joints: no ilium voxel touches the sacrum
        assert not (binary_dilation(sacrum) & ilia).any()


def test_no_fracture_lies_in_the_sacrum_or_pelvis(lumbosacral):
    fractured = [ph for ph in lumbosacral if ph.fractures]
    assert fractured
    for ph in fractured:
        assert all(f["vertebra"] != "S1" for f in ph.fractures)
        labels, mask = _canonical(ph.vertebra_labels), _canonical(ph.fracture_mask) > 0
        pelvis = (labels == TOTALSEGMENTATOR_IDS["S1"]) | (
            np.isin(_canonical(ph.tissue_labels), BONE) & (labels == 0)
        )
        assert mask.any() and not (mask & pelvis).any()


def test_a_thoracic_field_has_no_pelvis():
    ph = generate_phantom("t", 4, _params(appearance=PhantomAppearance(levels=("T6", "T8"))))
    labels = _canonical(ph.vertebra_labels)
    assert not (labels == TOTALSEGMENTATOR_IDS["S1"]).any()
    assert not (np.isin(_canonical(ph.tissue_labels), BONE) & (labels == 0)).any()
    assert "S1" not in ph.appearance["levels"]


def test_preview_shows_a_case_with_the_pelvis(phantoms, lumbosacral):
    without = [ph for ph in phantoms if "S1" not in ph.appearance["levels"]]
    fig = phantom_preview_figure([*without, lumbosacral[0]], max_cases=3)
    titles = [ax.get_title() for ax in fig.axes[::3]]
    assert len(titles) == 3 and any("-S1" in title for title in titles)


# ------------------------------------------------------------------------ sagittal profile

WHOLE_SPINE = (40, 40, 330)  # at 2 mm: a field from above T1 to below S1 (layouts only)


@pytest.fixture(scope="module")
def whole_spines() -> list[list[Vertebra]]:
    """T1..S1 of 60 patients, cranial first (layouts only, no image)."""
    spacing, look = np.full(3, 2.0), PhantomAppearance(levels=("T9", "T9"))
    spines = []
    for seed in range(60):
        layout = layout_spine(np.random.default_rng(seed), np.zeros(3), spacing, WHOLE_SPINE, look)
        pelvis = layout_pelvis(np.random.default_rng(seed), layout, spacing, look)
        spines.append([*layout.vertebrae, pelvis.sacrum.s1])
        assert [vt.name for vt in spines[-1]] == [*LEVELS, "S1"]
    return spines


def _inclination(vert: Vertebra) -> float:
    """Sagittal inclination (deg) of a vertebra's cranial axis toward anterior: its endplates'
    angle to the axial plane."""
    axis = vert.rot[:, 2]
    return float(np.degrees(np.arctan2(axis[1], axis[2])))


def _disc_height(upper: Vertebra, lower: Vertebra, side: float) -> float:
    """Height (mm) of the disc between two vertebrae at the front (``side`` 1) or the back (-1)
    of the upper body: its inferior endplate's edge above the lower's superior endplate."""
    edge = upper.center + upper.rot @ np.array([0.0, side * upper.geom.ry, -upper.geom.h / 2])
    endplate = lower.center + lower.geom.h / 2 * lower.rot[:, 2]
    return float((edge - endplate) @ lower.rot[:, 2])


def test_the_spine_curves_as_an_adults_in_the_sagittal_plane(whole_spines):
    """Cobb angles between the generated endplates: lumbar lordosis L1-S1 30-60 deg and
    thoracic kyphosis T4-T12 20-50 deg in most patients, flatter and steeper ones in the tails;
    the sacral slope 25-55 deg; the lordosis' apex (the body farthest in front of the line from
    L1 to S1) at L3 or L4."""
    lordosis, kyphosis, slope, apex = [], [], [], []
    for spine in whole_spines:
        by_name = {vt.name: vt for vt in spine}
        incl = {name: _inclination(vt) for name, vt in by_name.items()}
        lordosis.append(incl["S1"] - incl["L1"])
        kyphosis.append(incl["T4"] - incl["T12"])
        slope.append(np.degrees(np.arccos(by_name["S1"].rot[2, 2])))
        s1 = by_name["S1"]
        top, l1 = s1.center + s1.geom.h / 2 * s1.rot[:, 2], by_name["L1"].center
        front = np.cross([1.0, 0.0, 0.0], top - l1)  # anterior normal of the chord (sagittal)
        lumbar = [f"L{i}" for i in range(1, 6)]
        apex.append(lumbar[int(np.argmax([(by_name[n].center - l1) @ front for n in lumbar]))])
    lordosis, kyphosis, slope = np.array(lordosis), np.array(kyphosis), np.array(slope)
    assert np.all((lordosis > 15) & (lordosis < 65))
    assert np.mean((lordosis >= 30) & (lordosis <= 60)) >= 0.85 and np.ptp(lordosis) > 20
    assert np.all((kyphosis > 8) & (kyphosis < 66))
    assert np.mean((kyphosis >= 20) & (kyphosis <= 50)) >= 0.85 and np.ptp(kyphosis) > 20
    assert np.all((slope >= 25) & (slope <= 55)) and np.mean((slope >= 30) & (slope <= 50)) >= 0.7
    assert np.mean(np.isin(apex, ["L3", "L4"])) >= 0.9


def test_discs_stay_plausible_along_the_curve(whole_spines):
    """No bodies overlap (every disc open at its front and back), no disc is wedged beyond
    ~15 deg, and the L5/S1 disc stands 9-20 mm high in front (adults ~10-16 mm), not a wedge
    that makes up the sacral slope alone."""
    worst = []
    for spine in whole_spines:
        wedges = [abs(_inclination(lo) - _inclination(up)) for up, lo in pairwise(spine)]
        worst.append(max(wedges))
        for upper, lower in pairwise(spine):
            assert min(_disc_height(upper, lower, side) for side in (-1.0, 1.0)) > 1.0
        assert 9.0 <= _disc_height(spine[-2], spine[-1], 1.0) <= 20.0
    assert max(worst) <= 18.0 and np.percentile(worst, 90) <= 16.0


def test_bodies_stay_in_a_shallow_field_along_the_curve():
    """However the spine curves through an 80 mm deep field, the bodies whose centre is in
    view stay inside it, a margin in front of them (their processes may be cut)."""
    shape, spacing = (48, 40, 80), np.full(3, 2.0)
    far = (np.array(shape) - 1) * spacing
    for seed in range(20):
        layout = layout_spine(
            np.random.default_rng(seed), np.zeros(3), spacing, shape, DEFAULT_LOOK
        )
        for vt in layout.vertebrae:
            if 0 <= vt.center[2] <= far[2]:
                g = vt.geom
                corners = [vt.rot @ np.array([0.0, g.ry, s * g.h / 2]) for s in (-1, 1)]
                assert max(vt.center[1] + c[1] for c in corners) < far[1]
                assert vt.center[1] + g.ry <= far[1] - BODY_MARGIN_MM * layout.scale + 1e-6


def test_lower_ribs_are_long_floating_ribs():
    """T11's ribs run 90+ mm out from the body's centre and T12's beyond 40 mm in most
    patients (a rudimentary 12th rib in a few), whatever their transverse processes."""
    reach: dict[str, list[float]] = {"T11": [], "T12": []}
    for seed in range(100):
        rng = np.random.default_rng(seed)
        for name, reaches in reach.items():
            g = level_geom(LEVELS.index(name), 1.0, rng)
            ends = np.concatenate([part.extent()[0] for part in posterior_elements(g)])
            reaches.append(float(np.abs(ends[:, 0]).max()))
    t11, t12 = np.array(reach["T11"]), np.array(reach["T12"])
    assert t11.min() > 90 and np.mean(t12 > 40) >= 0.8 and 0 < np.mean(t12 < 40) <= 0.2


def test_a_phantoms_lower_ribs_reach_beyond_the_anchors_40_mm():
    """Painted: T11's and T12's bone (their vertebra ids) reaches beyond 40 mm (the level
    namer's ``RIB_REACH_MM``) from the body's midline on both sides in a wide field."""
    look = PhantomAppearance(levels=("T11", "T12"))
    params = _params(n_cases=3, seed=21, shape=(96, 64, 48), appearance=look)
    reached = []
    for ph in generate_phantom_set(params):
        labels = _canonical(ph.vertebra_labels)
        for name in ("T11", "T12"):
            xs = np.nonzero(labels == TOTALSEGMENTATOR_IDS[name])[0]
            if xs.size:
                x = (xs - np.median(xs)) * SPACING[0]
                reached.append(min(-x.min(), x.max()) > 40.0)
    assert len(reached) >= 4 and np.mean(reached) >= 0.75
