"""How often the bodies found without a label map get their right level name.

Phantoms of several fields of view (thoracic, thoraco-lumbar, lumbar; those reaching below L5
show the sacrum and ilia) and the real CT of tests/data/real_ct (T11-S1, sacrum in view) go
through what the pipelines do for a scan without a label map: canonical grid at 1.25 mm,
``locate_spine``, ``find_vertebral_bodies``, ``name_levels``. A found body's true level is the
label map's vertebra holding most of its voxels. Prints per case the (true, given) names and
the totals.

    PYTHONPATH=src .venv/bin/python benchmarks/level_naming.py --phantoms 12   # 3 x 12 cases
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np

from vertebral_fracture.phantoms import PhantomAppearance, PhantomSetParams, generate_phantom_set
from vertebral_fracture.preprocessing import resample, to_canonical
from vertebral_fracture.spine import (
    body_label_map,
    find_vertebral_bodies,
    locate_spine,
    name_levels,
)
from vertebral_fracture.vertebrae import found_body_ids, level_names

CANONICAL_MM = (1.25, 1.25, 1.25)
REAL_CT = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_ct" / "lumbar_ct.nii.gz"
#: (shape at 1.25 mm, level range the field is centred on) of the phantom sets
FIELDS = (
    ((128, 112, 200), ("T4", "T10")),
    ((128, 112, 200), ("T9", "L2")),
    ((96, 96, 160), ("L1", "L5")),
)


def named(ct: nib.Nifti1Image, truth: nib.Nifti1Image) -> list[tuple[str, str]]:
    """(true level, given name) of every body found in ``ct``; given "" when not named."""
    canonical, _ = to_canonical(ct, None, CANONICAL_MM)
    hu = np.asanyarray(canonical.dataobj, dtype=np.float32)
    spine = locate_spine(hu, CANONICAL_MM)
    bodies = find_vertebral_bodies(hu, CANONICAL_MM, spine)
    levels = name_levels(hu, CANONICAL_MM, spine, bodies)
    found = body_label_map(hu, CANONICAL_MM, spine, bodies, found_body_ids(len(bodies)))
    labels = resample(
        np.asanyarray(truth.dataobj), truth.affine, canonical.affine, hu.shape, order=0
    )
    names = level_names("totalsegmentator")
    rows = []
    for i in range(len(bodies)):
        inside = labels[found == i + 1].astype(np.int64)
        inside = inside[inside > 0]
        true = names[int(np.bincount(inside).argmax())] if inside.size else "-"
        rows.append((true, (levels[i] or "(left out)") if levels else ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=12, help="cases per field of view")
    args = parser.parse_args()
    totals: Counter[str] = Counter()
    cases = [
        ("real CT", nib.load(REAL_CT), nib.load(REAL_CT.with_name("lumbar_ct_vertebrae.nii.gz")))
    ]
    for k, (shape, levels) in enumerate(FIELDS):
        params = PhantomSetParams(
            n_cases=args.phantoms,
            shape=shape,
            spacing_mm=CANONICAL_MM,
            seed=9000 + 100 * k,
            appearance=PhantomAppearance(levels=levels),
        )
        cases += [
            (p.case_id + f" {levels}", p.ct, p.vertebra_labels)
            for p in generate_phantom_set(params)
        ]
    for name, ct, truth in cases:
        rows = named(ct, truth)
        group = "real" if name == "real CT" else "phantoms"
        totals[f"{group} bodies"] += len(rows)
        totals[f"{group} named"] += sum(bool(given) for _, given in rows)
        totals[f"{group} named right"] += sum(given == true for true, given in rows)
        print(name, rows)
    print(dict(totals))


if __name__ == "__main__":
    main()
