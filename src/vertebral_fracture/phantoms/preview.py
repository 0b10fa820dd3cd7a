"""Preview figure of phantoms: axial, coronal and sagittal bone-window planes with mask outline."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from .generator import Phantom

BONE_WINDOW = (-400.0, 1200.0)  # HU (level 400, width 1600)


def focus_voxel(ct: np.ndarray, mask: np.ndarray) -> tuple[int, int, int]:
    """Voxel (X, Y, Z indices) the preview planes pass through.

    The centroid of the largest fracture component, or for fracture-free cases the bone
    centroid in x and z and the coronal plane richest in bone (through the vertebral bodies).
    """
    if mask.any():
        components, count = ndimage.label(mask)
        largest = 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
        return tuple(int(round(c)) for c in np.argwhere(components == largest).mean(0))
    bone = ct > 250
    if not bone.any():
        return tuple(s // 2 for s in ct.shape)
    i, _, k = (int(round(c)) for c in np.argwhere(bone).mean(0))
    return i, int(np.argmax(bone.sum(axis=(0, 2)))), k


def phantom_preview_figure(phantoms: list[Phantom], max_cases: int = 6) -> Figure:
    """Up to ``max_cases`` rows, from the least to the densest bone: axial, coronal and
    sagittal planes of the canonical (RAS) CT, titled with the levels in view and what the
    case drew (over the sagittal plane, which shows the curvature: its lordosis, kyphosis and
    sacral slope). Where some case shows the sacrum (S1 in view) and none of those picked
    does, the middle row is one that does, so the sheet shows the pelvis.

    Planes pass through the fracture-mask centroid (volume centre if fracture-free), are shown
    in radiological convention (patient right on the left, anterior up / on the left) with
    physical aspect ratio, and the mask outline drawn in red.
    """
    # spread over bone density, the draw that changes a case's look the most
    by_density = sorted(phantoms, key=lambda ph: ph.appearance["trabecular_hu"])
    picks = np.unique(np.linspace(0, len(by_density) - 1, min(max_cases, len(by_density))).round())
    cases = [by_density[int(i)] for i in picks]
    pelvic = [ph for ph in by_density if "S1" in ph.appearance["levels"]]
    if pelvic and not any("S1" in ph.appearance["levels"] for ph in cases):
        cases[len(cases) // 2] = pelvic[len(pelvic) // 2]
        cases.sort(key=lambda ph: ph.appearance["trabecular_hu"])
    fig = Figure(figsize=(10.5, 3.4 * max(len(cases), 1)), layout="constrained")
    axes = fig.subplots(max(len(cases), 1), 3, squeeze=False)
    for row, ph in zip(axes, cases, strict=False):
        ct_img = nib.as_closest_canonical(ph.ct)
        ct = np.asanyarray(ct_img.dataobj)
        mask = np.asanyarray(nib.as_closest_canonical(ph.fracture_mask).dataobj) > 0
        sx, sy, sz = ct_img.header.get_zooms()[:3]
        i, j, k = focus_voxel(ct, mask)
        planes = [  # (image rows x cols, aspect = row spacing / col spacing, name)
            (ct[::-1, :, k].T[::-1], mask[::-1, :, k].T[::-1], sy / sx, "axial"),
            (ct[::-1, j, :].T[::-1], mask[::-1, j, :].T[::-1], sz / sx, "coronal"),
            (ct[i, ::-1, :].T[::-1], mask[i, ::-1, :].T[::-1], sz / sy, "sagittal"),
        ]
        for ax, (img, outline, aspect, name) in zip(row, planes, strict=True):
            ax.imshow(
                img,
                cmap="gray",
                vmin=BONE_WINDOW[0],
                vmax=BONE_WINDOW[1],
                aspect=aspect,
                interpolation="nearest",
            )
            if outline.any():
                ax.contour(outline.astype(float), levels=[0.5], colors="red", linewidths=0.8)
            ax.set_axis_off()
            ax.set_title(name, fontsize=8)
        kinds = ", ".join(f"{f['kind']} {f['vertebra']}" for f in ph.fractures) or "no fracture"
        levels = ph.appearance["levels"]
        row[0].set_title(
            f"{ph.case_id} [{ph.orientation}] {levels[0]}-{levels[-1]}: {kinds}\naxial",
            fontsize=8,
        )
        look = ph.appearance
        row[2].set_title(
            f"size x{look['size_scale']:.2f}, trabecular {look['trabecular_hu']:.0f} HU, "
            f"slice {look['slice_thickness_mm']:.1f} mm, noise {look['noise_hu']:.0f} HU\n"
            f"sagittal: lordosis {look['lordosis_deg']:.0f}, kyphosis {look['kyphosis_deg']:.0f}, "
            f"sacral slope {look['sacral_slope_deg']:.0f} deg",
            fontsize=8,
        )
    return fig
