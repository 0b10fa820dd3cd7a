"""Nodes of the fusion pipeline: 3D fusion of the views, validation thresholds, label maps."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator

import nibabel as nib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vertebral_fracture.evaluation import (
    ValidationCase,
    choose_candidate_rules,
    choose_voxel_thresholds,
)
from vertebral_fracture.findings import voxel_volume_mm3, youden_threshold
from vertebral_fracture.fusion import FUSION_METHODS, binarize, fuse, pool_log_evidence
from vertebral_fracture.metrics import ground_truth_lesions
from vertebral_fracture.pipelines.views import VIEWS
from vertebral_fracture.vertebrae import fractured_vertebrae, vertebra_scores

logger = logging.getLogger(__name__)

LazyImages = dict[str, Callable[[], nib.Nifti1Image]]


class FusionParams(BaseModel):
    """Views to fuse and, per model variant, the fusion methods to compute."""

    model_config = ConfigDict(extra="forbid")
    views: list[str] = Field(default_factory=lambda: list(VIEWS), min_length=1)
    methods: dict[str, list[str]]
    log_smoothing_mm: float = Field(
        1.25,
        ge=0.0,
        description="Gaussian sigma (mm) over the log scores of the product and geometric-mean "
        "fusions (fusion.pool_log_evidence); 0: none",
    )

    @field_validator("views")
    @classmethod
    def _known_views(cls, views: list[str]) -> list[str]:
        unknown = sorted(set(views) - set(VIEWS))
        if unknown:
            raise ValueError(f"unknown view(s) {unknown}; choose from {list(VIEWS)}")
        return views

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: dict[str, list[str]]) -> dict[str, list[str]]:
        for variant, names in methods.items():
            unknown = sorted(set(names) - set(FUSION_METHODS))
            if unknown:
                raise ValueError(
                    f"unknown fusion method(s) {unknown} for {variant}; "
                    f"choose from {sorted(FUSION_METHODS)}"
                )
        return methods


def fuse_views(
    axial: LazyImages,
    coronal: LazyImages,
    sagittal: LazyImages,
    params: FusionParams,
    *,
    variant: str,
) -> dict[str, Callable[[], nib.Nifti1Image]]:
    """Fused probability volumes ``<variant>_<method>/<case>``, computed lazily case by case."""
    if variant not in params.methods:
        raise ValueError(
            f"fusion.methods has no entry for the variant '{variant}': list its fusion "
            f"methods, e.g. `{variant}: [product]`, in parameters_fusion.yml"
        )
    by_view = {"axial": axial, "coronal": coronal, "sagittal": sagittal}
    views = [by_view[v] for v in params.views]

    def fused(case_id: str, method: str) -> nib.Nifti1Image:
        images = [view[case_id]() for view in views]
        volume = fuse([np.asanyarray(image.dataobj, dtype=np.float32) for image in images], method)
        volume = pool_log_evidence(
            volume, method, params.log_smoothing_mm, images[0].header.get_zooms()[:3]
        )
        return nib.Nifti1Image(volume, images[0].affine, images[0].header)

    return {
        f"{variant}_{method}/{case_id}": functools.partial(fused, case_id, method)
        for method in params.methods[variant]
        for case_id in views[0]
    }


def _validation_cases(
    raw_scans: LazyImages,
    case_index: list[dict],
    by_case: dict[str, LazyImages],
    vertebra_maps: LazyImages | None = None,
) -> Iterator[ValidationCase]:
    """Labelled validation cases one at a time: their lesions (a fracture per vertebra of
    ``vertebra_maps``; without them the mask's components), and a loader per fused method."""
    for record in case_index:
        case_id = record["case_id"]
        if record["split"] != "val" or not record["mask"] or case_id not in by_case:
            continue
        vertebrae = vertebra_maps[case_id] if vertebra_maps is not None else None
        gt = load_lesions(raw_scans[record["mask"]], vertebrae)  # once for all methods
        yield (
            gt,
            {
                method: functools.partial(load_voxels, load)
                for method, load in by_case[case_id].items()
            },
        )


def load_lesions(
    mask: Callable[[], nib.Nifti1Image], vertebrae: Callable[[], nib.Nifti1Image] | None = None
) -> np.ndarray:
    """A case's ground-truth lesion ids (``metrics.ground_truth_lesions``) from its lazily
    listed fracture mask and, when given, its vertebra map on the same grid."""
    labels = None if vertebrae is None else np.asanyarray(vertebrae().dataobj)
    return ground_truth_lesions(np.asanyarray(mask().dataobj), labels)


def load_voxels(load: Callable[[], nib.Nifti1Image]) -> np.ndarray:
    """The float32 voxels of a lazily listed NIfTI partition."""
    return np.asanyarray(load().dataobj, dtype=np.float32)


def select_thresholds(
    raw_scans: LazyImages, case_index: list[dict], *fused: LazyImages
) -> dict[str, float]:
    """Per fused method, the threshold that maximises voxel F1 on the validation cases.

    This is the operating point a user deploying the model gets; test cases never choose it.
    Methods without validation fractures get threshold 0.5.
    """
    by_case = fused_by_case(fused)
    methods = {method for methods in by_case.values() for method in methods}
    return choose_voxel_thresholds(_validation_cases(raw_scans, case_index, by_case), methods)


def select_candidate_rules(
    raw_scans: LazyImages,
    vertebra_maps: LazyImages,
    case_index: list[dict],
    voxel_thresholds: dict[str, float],
    *fused: LazyImages,
) -> dict[str, dict[str, float]]:
    """Per fused method, how it forms its lesion candidates: ``{"threshold", "growth_decades"}``
    (``metrics.CandidateRule``).

    Chosen on the validation cases for the best FROC sensitivity at 1 false positive per scan
    (``evaluation.LesionCandidateSearch``; a lesion is a vertebra's fracture): seeds at a
    threshold of a log-spaced grid or the method's voxel threshold, grown some decades below
    their peaks; methods without validation fractures keep their voxel threshold's components.
    """
    by_case = fused_by_case(fused)
    chosen = choose_candidate_rules(
        _validation_cases(raw_scans, case_index, by_case, vertebra_maps), voxel_thresholds
    )
    for method, rule in chosen.items():
        logger.info(
            "%s: lesion candidates seeded at %.3g, grown %g decades below their peaks "
            "(voxel threshold %.3g)",
            method,
            rule.threshold,
            rule.growth_decades,
            voxel_thresholds[method],
        )
    return {method: rule._asdict() for method, rule in chosen.items()}


def select_vertebra_thresholds(
    raw_scans: LazyImages,
    vertebra_maps: LazyImages,
    case_index: list[dict],
    voxel_thresholds: dict[str, float],
    *fused: LazyImages,
) -> dict[str, float]:
    """Per fused method, the vertebra score from which a vertebra is called fractured.

    Chosen on the labelled validation cases' vertebrae for the highest Youden index
    (``findings.youden_threshold``); a method whose validation vertebrae are all of one
    class keeps its voxel threshold.
    """
    by_case = fused_by_case(fused)
    scores: dict[str, list[float]] = {}
    truth: dict[str, list[bool]] = {}
    for record in case_index:
        case_id = record["case_id"]
        if record["split"] != "val" or not record["mask"] or case_id not in by_case:
            continue
        labels = np.asanyarray(vertebra_maps[case_id]().dataobj).astype(np.int16)
        mask = np.asanyarray(raw_scans[record["mask"]]().dataobj) > 0
        voxel_mm3 = voxel_volume_mm3(np.asarray(record["affine"]))
        fractured = fractured_vertebrae(labels, mask, voxel_mm3)
        for method, load in by_case[case_id].items():
            per_label = vertebra_scores(labels, load_voxels(load), voxel_mm3)
            scores.setdefault(method, []).extend(per_label[label] for label in fractured)
            truth.setdefault(method, []).extend(fractured.values())
    methods = {method for methods in by_case.values() for method in methods}
    return {
        method: youden_threshold(
            scores.get(method, []), truth.get(method, []), voxel_thresholds[method]
        )
        for method in sorted(methods)
    }


def label_maps(
    thresholds: dict[str, float], case_index: list[dict], *fused: LazyImages
) -> dict[str, Callable[[], nib.Nifti1Image]]:
    """Binary label maps ``<method>/<case>`` of the test cases at the validation threshold."""
    test_cases = {r["case_id"] for r in case_index if r["split"] == "test"}

    def label_map(load: Callable[[], nib.Nifti1Image], threshold: float) -> nib.Nifti1Image:
        image = load()
        labels = binarize(np.asanyarray(image.dataobj, dtype=np.float32), threshold)
        return nib.Nifti1Image(labels, image.affine)

    return {
        f"{method}/{case_id}": functools.partial(label_map, load, thresholds[method])
        for case_id, methods in fused_by_case(fused).items()
        if case_id in test_cases
        for method, load in methods.items()
    }


def fused_by_case(fused: tuple[LazyImages, ...]) -> dict[str, LazyImages]:
    """Fused partitions ``<method>/<case>`` of all variants as case -> method -> loader."""
    by_case: dict[str, LazyImages] = {}
    for partitions in fused:
        for key, load in partitions.items():
            method, case_id = key.split("/", 1)
            by_case.setdefault(case_id, {})[method] = load
    return by_case
