"""Nodes of the data_processing pipeline: thin wrappers over phantoms, cases, preprocessing."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import nibabel as nib
import numpy as np
from matplotlib.figure import Figure

from vertebral_fracture.cases import (
    CaseRecord,
    ScanError,
    find_cases,
    split_cases,
    validate_case,
    validate_vertebra_map,
)
from vertebral_fracture.phantoms import (
    PhantomSetParams,
    generate_phantom_set,
    phantom_preview_figure,
)
from vertebral_fracture.pipelines.data_processing.params import DataProcessingParams
from vertebral_fracture.preprocessing import resample, to_canonical, window
from vertebral_fracture.progress import Progress
from vertebral_fracture.slicing import SliceStack, extract_slices
from vertebral_fracture.spine import (
    body_label_map,
    find_vertebral_bodies,
    locate_spine,
    name_levels,
)
from vertebral_fracture.vertebrae import FOUND_BODIES, found_body_ids

logger = logging.getLogger(__name__)

LazyImages = dict[str, Callable[[], nib.Nifti1Image]]
PHANTOM_VERTEBRA_LABELS = "totalsegmentator"  # the generator's vertebra ids


def generate_phantoms(
    params: PhantomSetParams,
) -> tuple[dict[str, nib.Nifti1Image], list[dict], Figure]:
    """Synthetic spine CT cases with fracture masks, their manifest and a preview figure."""
    phantoms = generate_phantom_set(params)
    scans: dict[str, nib.Nifti1Image] = {}
    for phantom in phantoms:
        scans[f"{phantom.case_id}_ct"] = phantom.ct
        scans[f"{phantom.case_id}_fracture"] = phantom.fracture_mask
        scans[f"{phantom.case_id}_vertebrae"] = phantom.vertebra_labels
    manifest = [
        {
            "case_id": p.case_id,
            "orientation": p.orientation,
            "fractures": p.fractures,
            "distractors": p.distractors,
            "appearance": p.appearance,
            "twin_of": p.twin_of,
            "training_only": p.training_only,
        }
        for p in phantoms
    ]
    # twins would repeat their cases' looks on the sheet
    return scans, manifest, phantom_preview_figure([p for p in phantoms if p.twin_of is None])


def index_cases(
    raw_scans: LazyImages, phantom_manifest: list[dict], raw_dir: str, params: DataProcessingParams
) -> list[dict]:
    """Find, validate and split (train/val/test) every case of the scan folder before any work.

    ``phantom_manifest`` orders phantom generation before discovery (the default scan folder
    holds the phantoms) and marks which cases are synthetic, which are intact twins and which
    only train. A twin joins its fractured case when that one trains (``twin_of`` names it)
    and is left out otherwise; training-only cases train. Validation and test sets are thus
    those the other cases split into, whatever twins and training-only cases are added.
    """
    synthetic = {entry["case_id"] for entry in phantom_manifest}
    records = _validated_records(raw_scans, raw_dir, params, synthetic)
    found = {r.case_id for r in records}
    twin_of = {e["case_id"]: e["twin_of"] for e in phantom_manifest if e.get("twin_of")}
    twin_of = {twin: case for twin, case in twin_of.items() if twin in found}
    training_only = {e["case_id"] for e in phantom_manifest if e.get("training_only")}
    split = params.split
    fractions = {"train": split.train, "val": split.val, "test": split.test}
    drawn = {
        r.case_id: r.fracture_voxels
        for r in records
        if r.case_id not in twin_of and r.case_id not in training_only
    }
    assignment = split_cases(drawn, fractions, split.seed)
    assignment |= {case: "train" for case in training_only & found if case not in twin_of}
    twins = [
        r for r in records if r.case_id in twin_of and assignment.get(twin_of[r.case_id]) == "train"
    ]
    for record in twins:
        record.twin_of = twin_of[record.case_id]
        assignment[record.case_id] = "train"
    if twin_of:
        logger.info(
            "Intact twins: %d of training cases kept, %d of validation or test cases unused",
            len(twins),
            len(twin_of) - len(twins),
        )
    return _with_splits([r for r in records if r.case_id in assignment], assignment)


def index_evaluation_cases(
    raw_scans: LazyImages, raw_dir: str, params: DataProcessingParams
) -> list[dict]:
    """Find and validate every case of the scan folder; all are test cases (no training)."""
    records = _validated_records(raw_scans, raw_dir, params, synthetic=set())
    return _with_splits(records, {r.case_id: "test" for r in records})


def _validated_records(
    raw_scans: LazyImages, raw_dir: str, params: DataProcessingParams, synthetic: set[str]
) -> list[CaseRecord]:
    cases = find_cases(list(raw_scans), raw_dir)
    records = []
    for case in Progress(cases, desc="Validating scans", unit="case"):
        ct, mask = validate_case(
            raw_scans[case.ct](),
            raw_scans[case.mask]() if case.mask else None,
            ct_name=case.ct,
            mask_name=case.mask,
            binarize_masks=params.binarize_masks,
        )
        convention = (
            FOUND_BODIES
            if not case.vertebrae
            else PHANTOM_VERTEBRA_LABELS
            if case.case_id in synthetic
            else params.vertebra_labels
        )
        if case.vertebrae:
            validate_vertebra_map(
                raw_scans[case.vertebrae](),
                ct,
                name=case.vertebrae,
                ct_name=case.ct,
                convention=convention,
            )
        records.append(
            CaseRecord(
                case_id=case.case_id,
                ct=case.ct,
                mask=case.mask,
                split="",
                fracture_voxels=int(np.count_nonzero(mask.dataobj)) if mask is not None else None,
                shape=[int(n) for n in ct.shape],
                affine=np.asarray(ct.affine, dtype=float).tolist(),
                spacing_mm=[round(float(z), 4) for z in ct.header.get_zooms()[:3]],
                orientation="".join(nib.aff2axcodes(ct.affine)),
                source="phantom" if case.case_id in synthetic else "user",
                vertebrae=case.vertebrae,
                vertebra_convention=convention,
            )
        )
    return records


def _with_splits(records: list[CaseRecord], assignment: dict[str, str]) -> list[dict]:
    for record in records:
        record.split = assignment[record.case_id]
    counts = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    logger.info("Cases: %d (%s)", len(records), ", ".join(f"{k} {v}" for k, v in counts.items()))
    return [r.to_dict() for r in records]


def preprocess_cases(
    raw_scans: LazyImages, case_index: list[dict], params: DataProcessingParams
) -> dict[str, Callable[[], nib.Nifti1Image]]:
    """Canonical RAS volumes at the target spacing, saved lazily case by case.

    Returns partitions ``<case>/ct`` (int16 HU) and ``<case>/fracture`` (uint8), so the
    canonical folder can be opened in any NIfTI viewer.
    """

    @functools.lru_cache(
        maxsize=1
    )  # ct and fracture partitions of a case are saved one after the other
    def canonical(case_id: str) -> tuple[nib.Nifti1Image, nib.Nifti1Image | None]:
        record = by_id[case_id]
        ct, mask = validate_case(
            raw_scans[record["ct"]](),
            raw_scans[record["mask"]]() if record["mask"] else None,
            ct_name=record["ct"],
            mask_name=record["mask"],
            binarize_masks=params.binarize_masks,
        )
        return to_canonical(ct, mask, params.spacing_mm)

    by_id = {record["case_id"]: record for record in case_index}
    partitions: dict[str, Callable[[], nib.Nifti1Image]] = {}
    for case_id, record in by_id.items():
        partitions[f"{case_id}/ct"] = functools.partial(lambda c: canonical(c)[0], case_id)
        if record["mask"]:
            partitions[f"{case_id}/fracture"] = functools.partial(
                lambda c: canonical(c)[1], case_id
            )
    return partitions


def vertebra_maps(
    raw_scans: LazyImages, canonical_scans: LazyImages, case_index: list[dict]
) -> dict[str, Callable[[], nib.Nifti1Image]]:
    """Every case's vertebra label map on its own scan's grid, made lazily case by case.

    The map given beside the scan (``<case>_vertebrae``, its ids as the case index's
    ``vertebra_convention`` says), else the vertebral bodies found in the canonical CT
    (``spine.find_vertebral_bodies``), named where ``spine.name_levels`` tells their levels
    (sacrum, last rib-bearing vertebra), else numbered from the top.
    """

    def given(record: dict) -> nib.Nifti1Image:
        return validate_vertebra_map(
            raw_scans[record["vertebrae"]](),
            raw_scans[record["ct"]](),
            name=record["vertebrae"],
            ct_name=record["ct"],
            convention=record["vertebra_convention"],
        )

    def found(record: dict) -> nib.Nifti1Image:
        ct = canonical_scans[f"{record['case_id']}/ct"]()
        hu = np.asanyarray(ct.dataobj, dtype=np.float32)
        spacing = ct.header.get_zooms()[:3]
        spine = locate_spine(hu, spacing)
        bodies = find_vertebral_bodies(hu, spacing, spine)
        ids = found_body_ids(len(bodies), name_levels(hu, spacing, spine, bodies))
        labels = body_label_map(hu, spacing, spine, bodies, ids)
        native = np.asarray(record["affine"], dtype=np.float64)
        on_scan = resample(labels, ct.affine, native, tuple(record["shape"]), order=0)
        return nib.Nifti1Image(np.rint(on_scan).astype(np.int16), native)

    return {
        record["case_id"]: functools.partial(given if record["vertebrae"] else found, record)
        for record in case_index
    }


def slice_view(
    canonical_scans: LazyImages, case_index: list[dict], params: DataProcessingParams, *, view: str
) -> dict[str, Callable[[], SliceStack]]:
    """2D slices of one view for every case with the located spine (``locate_spine``),
    extracted lazily so one case is in memory at a time."""

    def stack(record: dict) -> SliceStack:
        case_id = record["case_id"]
        ct = canonical_scans[f"{case_id}/ct"]()
        mask_key = f"{case_id}/fracture"
        mask = (
            np.asanyarray(canonical_scans[mask_key]().dataobj)
            if mask_key in canonical_scans
            else None
        )
        hu = np.asanyarray(ct.dataobj)
        spine = locate_spine(hu, ct.header.get_zooms()[:3])
        image = window(hu, params.window_level, params.window_width)
        return extract_slices(
            case_id, image, mask, view, params.min_slice_size, ct.affine, spine=spine
        )

    if not case_index:
        raise ScanError("The case index is empty: no scans to slice.")
    return {record["case_id"]: functools.partial(stack, record) for record in case_index}
