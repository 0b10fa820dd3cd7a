"""Finding cases in a folder of scans, validating them, and splitting them.

A case is ``<case>_ct.nii.gz`` (or ``.nii``) in Hounsfield units, or a folder ``<case>/``
(or ``<case>_ct/``) holding one DICOM CT series, with an optional ``<case>_fracture.nii.gz``
binary mask and an optional ``<case>_vertebrae.nii.gz`` vertebra label map
(``vertebrae.LABEL_CONVENTIONS``), both on the scan's voxel grid (for a series: rows,
columns, slices ordered along the slice normal). TotalSegmentator's habit of naming the map
after the scan file, ``<case>_ct_vertebrae.nii.gz``, works too.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import nibabel as nib
import numpy as np

from vertebral_fracture.vertebrae import level_names, unknown_labels

logger = logging.getLogger(__name__)

DICOM_SERIES_SUFFIX = "/"  # a partition id naming a DICOM series folder ends like a folder
_SCAN_NAME = re.compile(r"^(?P<case>.+)_(?P<kind>ct|fracture|vertebrae)\.nii(\.gz)?$")
# A CT in Hounsfield units of a spine holds bone (>= 150 HU) and fat or air (<= -50 HU).
_HU_BONE_MIN, _HU_LOW_MAX = 150.0, -50.0


class ScanError(ValueError):
    """A scan or a set of scans that the pipeline cannot use; the message names the file."""


@dataclass(frozen=True)
class CaseFiles:
    """Partition ids (paths relative to the scan folder) of one case's files."""

    case_id: str
    ct: str
    mask: str | None
    vertebrae: str | None = None


def find_cases(partition_ids: list[str], folder: str) -> list[CaseFiles]:
    """Group a scan folder's files into cases.

    Args:
        partition_ids: file paths relative to ``folder`` (as listed by ``PartitionedDataset``).
        folder: the scan folder, for error messages.

    Raises:
        ScanError: no CT in the folder, two files claiming one case id, or a mask or vertebra
            map without CT.
    """
    found_by_kind: dict[str, dict[str, str]] = {"ct": {}, "fracture": {}, "vertebrae": {}}
    cts, masks, vertebrae = found_by_kind.values()
    for pid in sorted(partition_ids):
        if is_dicom_series(pid):
            folder_name = posixpath.basename(posixpath.normpath(posixpath.join(folder, pid)))
            match = {"kind": "ct", "case": folder_name.removesuffix("_ct")}
        else:
            match = _SCAN_NAME.match(pid.rsplit("/", 1)[-1])
        if match is None:
            if pid.endswith((".nii", ".nii.gz")):
                logger.warning(
                    "Ignoring %s/%s: not named <case>_ct.nii.gz, <case>_fracture.nii.gz or "
                    "<case>_vertebrae.nii.gz.",
                    folder,
                    pid,
                )
            continue
        found = found_by_kind[match["kind"]]
        case_id = match["case"]
        if case_id in found:
            raise ScanError(
                f"Two files claim case id '{case_id}' in {folder}: '{found[case_id]}' and '{pid}'. "
                "Rename one of them."
            )
        found[case_id] = pid
    if not cts:
        raise ScanError(
            f"No CT scans found in {folder}: expected files named <case>_ct.nii.gz or "
            "folders of DICOM series (optionally with <case>_fracture.nii.gz masks)."
        )
    for case_id in [c for c in vertebrae if c not in cts and c.removesuffix("_ct") in cts]:
        if case_id.removesuffix("_ct") not in vertebrae:  # <case>_ct_vertebrae: the scan's name
            vertebrae[case_id.removesuffix("_ct")] = vertebrae.pop(case_id)
    for what, files in (("Fracture mask", masks), ("Vertebra label map", vertebrae)):
        orphans = sorted(set(files) - set(cts))
        if orphans:
            raise ScanError(
                f"{what} without CT in {folder}: '{files[orphans[0]]}' has no "
                f"'{orphans[0]}_ct.nii.gz' beside it."
            )
    return [
        CaseFiles(case_id, cts[case_id], masks.get(case_id), vertebrae.get(case_id))
        for case_id in sorted(cts)
    ]


def is_dicom_series(partition_id: str) -> bool:
    """Whether a scan folder's partition id names a DICOM series folder (not a file)."""
    return partition_id.endswith(DICOM_SERIES_SUFFIX)


def validate_case(
    ct: nib.Nifti1Image,
    mask: nib.Nifti1Image | None,
    *,
    ct_name: str,
    mask_name: str | None,
    binarize_masks: bool = False,
) -> tuple[nib.Nifti1Image, nib.Nifti1Image | None]:
    """Check one case; return it with trailing singleton dimensions removed and mask binary.

    Raises:
        ScanError: naming the file: not 3D, NaN/Inf voxels, not in Hounsfield units,
            mask grid differs from the CT, mask not binary (unless ``binarize_masks``).
    """
    ct = _as_3d(ct, ct_name)
    data = np.asanyarray(ct.dataobj)
    if not np.isfinite(data).all():
        raise ScanError(
            f"{ct_name}: {np.size(data) - np.isfinite(data).sum()} voxels are NaN or Inf."
        )
    low, high = float(data.min()), float(data.max())
    if high < _HU_BONE_MIN or low > _HU_LOW_MAX:
        raise ScanError(
            f"{ct_name}: values span [{low:g}, {high:g}], which is not a CT in Hounsfield units "
            f"(expected bone above {_HU_BONE_MIN:g} HU and fat or air below {_HU_LOW_MAX:g} HU). "
            "Convert the scan to HU (rescale slope/intercept) first."
        )
    if mask is None:
        return ct, None
    mask = _as_3d(mask, mask_name or "mask")
    if mask.shape != ct.shape:
        raise ScanError(
            f"{mask_name}: mask shape {mask.shape} differs from its CT {ct_name} {ct.shape}."
        )
    if not np.allclose(mask.affine, ct.affine, atol=1e-3):
        raise ScanError(
            f"{mask_name}: mask affine differs from its CT {ct_name}; the mask must be on the CT's "
            f"voxel grid.\nmask affine:\n{np.round(mask.affine, 4)}"
            f"\nCT affine:\n{np.round(ct.affine, 4)}"
        )
    labels = np.asanyarray(mask.dataobj)
    if not np.isfinite(labels).all():
        raise ScanError(f"{mask_name}: mask holds NaN or Inf voxels.")
    values = np.unique(labels)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
        if not binarize_masks:
            raise ScanError(
                f"{mask_name}: mask is not binary (values {shown}). Use 0/1 masks, or set "
                "data_processing.binarize_masks: true to treat every non-zero label as fracture."
            )
        logger.warning(
            "%s: non-binary mask (values %s) binarised: non-zero = fracture.", mask_name, shown
        )
    binary = nib.Nifti1Image((labels > 0).astype(np.uint8), ct.affine, mask.header)
    return ct, binary


def validate_vertebra_map(
    labels: nib.Nifti1Image,
    ct: nib.Nifti1Image,
    *,
    name: str,
    ct_name: str,
    convention: str,
) -> nib.Nifti1Image:
    """Check a vertebra label map against its CT; return it 3D with integer (int16) ids.

    Raises:
        ScanError: naming the file: not on the CT's voxel grid, not integer, or ids that the
            ``convention`` (``vertebrae.LABEL_CONVENTIONS``) does not name.
    """
    labels = _as_3d(labels, name)
    ct = _as_3d(ct, ct_name)
    if labels.shape != ct.shape or not np.allclose(labels.affine, ct.affine, atol=1e-3):
        raise ScanError(
            f"{name}: vertebra label map grid (shape {labels.shape}) differs from its CT "
            f"{ct_name} (shape {ct.shape}); it must be on the CT's voxel grid."
        )
    data = np.asanyarray(labels.dataobj)
    if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
        raise ScanError(f"{name}: vertebra label map holds non-integer values.")
    ids = data.astype(np.int16)
    unknown = unknown_labels(ids, convention)
    if unknown:
        raise ScanError(
            f"{name}: vertebra ids {unknown[:8]} are not {convention} ids "
            f"(known: {sorted(level_names(convention))[:3]} ...); set "
            "data_processing.vertebra_labels to the map's convention (totalsegmentator or verse)."
        )
    return nib.Nifti1Image(ids, ct.affine)


def _as_3d(image: nib.Nifti1Image, name: str) -> nib.Nifti1Image:
    shape = image.shape
    squeezed = tuple(n for i, n in enumerate(shape) if i < 3 or n != 1)
    if len(squeezed) != 3:
        raise ScanError(f"{name}: image has shape {shape}; a 3D volume is required.")
    if squeezed == shape:
        return image
    return nib.Nifti1Image(
        np.asanyarray(image.dataobj).reshape(squeezed), image.affine, image.header
    )


@dataclass
class CaseRecord:
    """One row of the case index (stored as JSON)."""

    case_id: str
    ct: str
    mask: str | None
    split: str
    fracture_voxels: int | None
    shape: list[int]
    affine: list[list[float]]
    spacing_mm: list[float]
    orientation: str
    source: str
    vertebrae: str | None = None  # vertebra label map, relative to the scan folder
    # ids of the case's vertebra map (vertebrae.LABEL_CONVENTIONS): "numbered" when found in the CT
    vertebra_convention: str | None = None
    twin_of: str | None = None  # an intact twin's fractured case (training pairs)

    def to_dict(self) -> dict:
        return asdict(self)


def split_cases(
    fracture_voxels: Mapping[str, int | None], fractions: Mapping[str, float], seed: int
) -> dict[str, str]:
    """Assign whole cases to train/val/test, stratified by fracture presence.

    Args:
        fracture_voxels: case id -> number of fracture voxels, None for inference-only cases.
        fractions: split name -> fraction of labelled cases (train, val, test).
        seed: shuffling seed.

    Returns:
        case id -> split. Inference-only cases go to test. Within each stratum (with and
        without fracture) counts follow ``fractions`` by largest remainder, so every case sits
        in exactly one split.
    """
    rng = np.random.default_rng(seed)
    names = list(fractions)
    weights = np.array([fractions[n] for n in names], dtype=float)
    weights /= weights.sum()
    assignment = {case: "test" for case, voxels in fracture_voxels.items() if voxels is None}
    for has_fracture in (True, False):
        stratum = sorted(
            c for c, v in fracture_voxels.items() if v is not None and (v > 0) == has_fracture
        )
        stratum = [stratum[i] for i in rng.permutation(len(stratum))]
        exact = weights * len(stratum)
        counts = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - counts), kind="stable")[: len(stratum) - counts.sum()]:
            counts[i] += 1
        start = 0
        for name, count in zip(names, counts, strict=True):
            for case in stratum[start : start + count]:
                assignment[case] = name
            start += count
    return assignment
