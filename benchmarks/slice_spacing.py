"""What coarser slices cost, on the same anatomy: the bench's trained models on one set of
phantoms drawn on a fine grid and the same phantoms resampled to coarser slices.

The phantoms have the out-of-domain set's field of view, in-plane spacing and orientations,
the training appearance and slices of the canonical spacing (``data_processing.spacing_mm``);
``--seed`` draws them (default: the development set's seed, which may choose a recipe). Each
coarser copy has contiguous slices of ``--spacings`` mm: a slice is the mean of the fine
slices it covers (partial volume), its mask the voxels a fracture covers by half or more,
thin lesions kept (``preprocessing.mask_from_fraction``). Every copy is scored by the
``evaluate`` pipeline with the models and validation thresholds in ``data/bench``. Beside the
models' PR-AUC on each coarse copy stands that of their fine-slice fused volume carried to the
coarse voxels the same way (``carried``): what a model that read the coarse scan as well as
the fine one would score there, since a coarse voxel only partly covered by a fracture is
scored whole. The gap between the two is what the models lose to the coarser slices; the gap
between ``carried`` and the fine PR-AUC is what the coarser voxels cost the yardstick.
Writes ``benchmarks/slice_spacing.json`` and prints a table (~1.5 min a spacing, 16 cases,
2 cores).

    .venv/bin/python benchmarks/slice_spacing.py --cases 16 --spacings 2.5 3.5 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_factors import factor_sets  # noqa: E402
from run_benchmark import ROOT, bench_context, plain_params, run_kedro, source_commit  # noqa: E402

#: The proposed model and fusion, whose PR-AUC is reported.
VARIANT, METHOD = "multitask", "multitask_product"


def fine_slice_set(params: dict, n_cases: int, seed: int) -> dict:
    """Phantom set parameters: the out-of-domain geometry with slices of the canonical spacing
    over the same z extent, and the training appearance (``ood_factors``' ``none`` set)."""
    spec = factor_sets(params, n_cases, seed)["none"]
    fine_z = params["data_processing"]["spacing_mm"][2]
    extent = spec["shape"][2] * spec["spacing_mm"][2]
    shape = [*spec["shape"][:2], round(extent / fine_z)]
    return {**spec, "shape": shape, "spacing_mm": [*spec["spacing_mm"][:2], fine_z]}


def coarser_slices(image: nib.Nifti1Image, slice_mm: float) -> nib.Nifti1Image:
    """``image`` (any orientation) in RAS with contiguous slices of ``slice_mm`` along z: each
    coarse slice is the mean of the fine ones it covers (partial volume), the scanner model of
    the augmentation's ``thick_slice_weights`` read at the coarse slices' centres.

    Returns:
        float32 image of shape (X, Y, n), its first slice centred on the middle of the fine
        slices it covers.
    """
    from vertebral_fracture.training.augmentation import thick_slice_weights

    ras = nib.as_closest_canonical(image)
    fine_mm = float(ras.header.get_zooms()[2])
    factor = slice_mm / fine_mm
    if factor < 1:
        raise ValueError(f"{slice_mm} mm slices are finer than the scan's {fine_mm:g} mm ones")
    data = np.asarray(ras.dataobj, dtype=np.float32)
    # coarse slice k covers fine samples [k * factor - 0.5, (k + 1) * factor - 0.5)
    phase = (factor - 1) / 2
    centres = phase + factor * np.arange(int(data.shape[2] // factor))
    weights = thick_slice_weights(centres, data.shape[2], factor, phase)  # (n, Z)
    affine = ras.affine.copy()
    affine[:3, 3] += affine[:3, 2] * phase
    affine[:3, 2] *= factor
    coarse = np.tensordot(data, weights.T, axes=([2], [0])).astype(np.float32)
    return nib.Nifti1Image(coarse, affine)


def coarsen_case(
    case: str, ct_path: Path, mask_path: Path | None, folder: Path, slice_mm: float
) -> None:
    """Write a case's CT (int16 HU) and fracture mask with coarser slices into ``folder``
    (``<case>_ct.nii.gz``, ``<case>_fracture.nii.gz``)."""
    from vertebral_fracture.preprocessing import mask_from_fraction

    coarse = coarser_slices(nib.load(ct_path), slice_mm)
    hu = np.rint(coarse.dataobj).astype(np.int16)
    nib.save(nib.Nifti1Image(hu, coarse.affine), folder / f"{case}_ct.nii.gz")
    if mask_path is not None:
        mask = nib.load(mask_path)
        binary = nib.Nifti1Image((np.asarray(mask.dataobj) > 0).astype(np.float32), mask.affine)
        fraction = np.asarray(coarser_slices(binary, slice_mm).dataobj)
        nib.save(
            nib.Nifti1Image(mask_from_fraction(fraction), coarse.affine),
            folder / f"{case}_fracture.nii.gz",
        )


def carried_pr_auc(fine_fused: Path, coarse_raw: Path, slice_mm: float) -> float:
    """PR-AUC of the fine scans' fused volumes (``<case>.nii.gz`` in ``fine_fused``) carried
    to the coarse slices as the CT is, against the coarse masks in ``coarse_raw``."""
    from vertebral_fracture.metrics import ScoreHistogram, average_precision

    histogram = ScoreHistogram()
    for mask_path in sorted(coarse_raw.glob("*_fracture.nii.gz")):
        case = mask_path.name.removesuffix("_fracture.nii.gz")
        truth = np.asarray(nib.load(mask_path).dataobj) > 0
        carried = coarser_slices(nib.load(fine_fused / f"{case}.nii.gz"), slice_mm).dataobj
        histogram.update(np.clip(carried, 0, 1).ravel(), truth.ravel())
    return average_precision(histogram)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=16, help="phantoms")
    parser.add_argument("--spacings", type=float, nargs="+", default=[2.5, 3.5, 5.0])
    parser.add_argument("--seed", type=int, help="generator seed (default: development set's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "slice_spacing.json")
    args = parser.parse_args(argv)

    from vertebral_fracture.cases import find_cases
    from vertebral_fracture.datasets import NiftiDataset
    from vertebral_fracture.phantoms import PhantomSetParams
    from vertebral_fracture.pipelines.data_processing.nodes import generate_phantoms

    os.chdir(ROOT)
    context = bench_context(ROOT)
    params = plain_params(context)
    seed = args.seed if args.seed is not None else params["benchmark"]["development"]["seed"]
    root = ROOT / context.config_loader["globals"]["data_root"] / "slice_spacing"
    spec = fine_slice_set(params, args.cases, seed)
    fine_z = spec["spacing_mm"][2]
    results: dict = {**source_commit(), "cases": args.cases, "seed": seed, "phantoms": spec}
    results["spacings"] = {}

    def evaluate(folder: Path) -> float:
        run = {"raw_dir": str(folder / "01_raw"), "output_root": str(folder)}
        run_kedro(ROOT, ["evaluate"], {**run, "variants": [VARIANT]})
        metrics = json.loads((folder / "08_reporting" / "metrics.json").read_text())
        return metrics["methods"][METHOD]["pr_auc"]

    fine = root / f"{fine_z:g}mm"
    phantoms, _, _ = generate_phantoms(PhantomSetParams(**spec))
    shutil.rmtree(fine / "01_raw", ignore_errors=True)  # generated here: no stale cases
    for case, image in phantoms.items():
        NiftiDataset(filepath=str(fine / "01_raw" / f"{case}.nii.gz")).save(image)
    results["spacings"][f"{fine_z:g}"] = {"models": evaluate(fine), "carried": None}
    fine_fused = fine / "07_model_output" / "fused" / VARIANT / METHOD
    raw = sorted(p.name for p in (fine / "01_raw").iterdir())
    cases = find_cases(raw, str(fine / "01_raw"))
    for slice_mm in args.spacings:
        folder = root / f"{slice_mm:g}mm"
        shutil.rmtree(folder / "01_raw", ignore_errors=True)
        (folder / "01_raw").mkdir(parents=True)
        for case in cases:
            mask = fine / "01_raw" / case.mask if case.mask else None
            coarsen_case(case.case_id, fine / "01_raw" / case.ct, mask, folder / "01_raw", slice_mm)
        results["spacings"][f"{slice_mm:g}"] = {
            "models": evaluate(folder),
            "carried": carried_pr_auc(fine_fused, folder / "01_raw", slice_mm),
        }
        args.out.write_text(json.dumps(results, indent=1) + "\n")  # a stopped run keeps these
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("slices (mm) | models on the scan | fine-slice models carried")
    for mm, entry in results["spacings"].items():
        carried = "–" if entry["carried"] is None else f"{entry['carried']:.3f}"
        print(f"{mm} | {entry['models']:.3f} | {carried}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
