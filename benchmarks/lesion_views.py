"""Which view sees which test lesion: per lesion, its kind and maximum probability per view.

Reads a finished bench run (``data/bench``): the test cases' masks, the phantom manifest
(fracture kinds), the per-view probability volumes of a variant and its fused volume, and
prints one row per ground-truth lesion (26-connected component). Product fusion keeps a
lesion only where every view scores it, so a lesion one view misses is lost.

    python benchmarks/lesion_views.py [--variant multitask] [--fused multitask_product]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from vertebral_fracture.evaluation import lesion_kinds
from vertebral_fracture.metrics import LESION_CONNECTIVITY

VIEWS = ("axial", "coronal", "sagittal")


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/bench"))
    parser.add_argument("--variant", default="multitask")
    parser.add_argument("--fused", default="multitask_product")
    args = parser.parse_args(argv)
    root = args.root
    index = json.loads((root / "02_intermediate/case_index.json").read_text())
    manifest = json.loads((root / "02_intermediate/phantom_manifest.json").read_text())
    fractures = {entry["case_id"]: entry["fractures"] for entry in manifest}
    probabilities = root / "07_model_output/probabilities" / args.variant
    fused_folder = root / "07_model_output/fused" / args.variant / args.fused
    print("| case | kind | voxels | " + " | ".join(VIEWS) + f" | {args.fused} |")
    print("|---|---|---|" + "---|" * (len(VIEWS) + 1))
    for record in (r for r in index if r["split"] == "test" and r["mask"]):
        mask_image = nib.load(root / "01_raw" / record["mask"])
        gt = np.asanyarray(mask_image.dataobj) > 0
        kinds = lesion_kinds(gt, mask_image.affine, fractures.get(record["case_id"], []))
        if not kinds:
            continue
        lesions, n = ndimage.label(gt, structure=LESION_CONNECTIVITY)
        case = f"{record['case_id']}.nii.gz"
        volumes = [_array(probabilities / view / case) for view in VIEWS]
        volumes.append(_array(fused_folder / case))
        ids = np.arange(1, n + 1)
        sizes = ndimage.sum(gt, lesions, ids)
        maxima = [ndimage.maximum(v, lesions, ids) for v in volumes]
        for j, kind in enumerate(kinds):
            cells = " | ".join(f"{m[j]:.2g}" for m in maxima)
            print(f"| {record['case_id']} | {kind} | {int(sizes[j])} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
