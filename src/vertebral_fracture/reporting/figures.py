"""Static evaluation figures (matplotlib ``Figure`` objects, no pyplot state).

Conventions
-----------
All volumes are canonical RAS voxel arrays indexed ``[x, y, z]``:
``x`` increases toward the patient's Right, ``y`` toward Anterior, ``z`` toward
Superior, with ``spacing = (sx, sy, sz)`` in millimetres per voxel.

Display follows the radiological convention:

* **sagittal** (projection / slice along ``x``): horizontal = ``y`` with anterior on
  the viewer's left (patient seen from the left side), vertical = ``z``, superior up;
* **coronal** (along ``y``): horizontal = ``x`` with the patient's right on the
  viewer's left, vertical = ``z``, superior up;
* **axial** (along ``z``): horizontal = ``x`` with the patient's right on the
  viewer's left, vertical = ``y``, anterior up (seen from the feet).

Each panel's image array is the *un-flipped* 2D array ``proj.T`` (rows = the
vertical anatomical axis) drawn with ``origin="lower"`` and an extent in mm; the
left/right flips above are done by inverting the matplotlib x axis, so tick labels
stay true voxel-centre coordinates in mm and aspect ratios are exact.

Panel axes carry a label ``"<view>|<column>"`` (``Axes.get_label()``) so callers and
tests can find them; colour-bar axes keep matplotlib's ``"<colorbar>"`` label.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from vertebral_fracture.findings import call_label
from vertebral_fracture.metrics import FROC_RATES, sensitivity_at
from vertebral_fracture.slicing import VIEW_AXES

__all__ = [
    "BONE_WINDOW",
    "GT_COLOR",
    "METHOD_COLORS",
    "PROB_CMAP",
    "SHOWN_DECADES",
    "VIEWS",
    "View",
    "attention_figure",
    "froc_figure",
    "mip_comparison_figure",
    "orthogonal_slice",
    "pr_curves_figure",
    "project_mip",
    "slice_overlay_figure",
    "score_norm",
]

# --------------------------------------------------------------------------- style

#: Bone window (level 400 HU, width 1800 HU) as (vmin, vmax) in HU.
BONE_WINDOW: tuple[float, float] = (-500.0, 1300.0)
#: Okabe-Ito bluish green for the ground truth (distinct from the heat map for
#: the common colour-vision deficiencies).
GT_COLOR = "#00B386"
#: Probability colour map of predictions (black-red-yellow-white "heat").
PROB_CMAP = "hot"
#: Decades of score shown below a method's operating threshold (product-fused scores lie
#: many decades below 1: a linear 0-1 scale draws them black).
SHOWN_DECADES = 3.0
#: Outline colour of a thresholded prediction (Okabe-Ito sky blue: stands out on
#: both the gray bone and the heat map).
PRED_OUTLINE_COLOR = "#56B4E9"
#: Okabe-Ito palette for curves, with distinct line styles so that curves also
#: differ in grayscale.
METHOD_COLORS: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
)
_LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class View:
    """One orthogonal view of an ``[x, y, z]`` volume."""

    name: str
    axis: int  # volume axis that is projected / sliced away
    h_axis: int  # volume axis shown horizontally
    v_axis: int  # volume axis shown vertically (origin="lower": increases upward)
    invert_h: bool  # True: higher h coordinate on the viewer's left
    left: str  # anatomical letter at the viewer's left edge
    right: str
    top: str
    bottom: str


#: The three views, in row order of the figures.
VIEWS: tuple[View, ...] = (
    View("sagittal", VIEW_AXES["sagittal"], 1, 2, True, "A", "P", "S", "I"),
    View("coronal", VIEW_AXES["coronal"], 0, 2, True, "R", "L", "S", "I"),
    View("axial", VIEW_AXES["axial"], 0, 1, True, "R", "L", "A", "P"),
)

_CONVENTION_NOTE = (
    "Radiological convention: patient's right on the viewer's left (coronal, axial); "
    "sagittal seen from the patient's left (anterior on the left); superior up, "
    "axial anterior up. Axes in mm."
)


# --------------------------------------------------------------------------- helpers


def _plain(text: object) -> str:
    """Data-derived text for matplotlib: ``$`` must not switch to mathtext."""
    return str(text).replace("$", r"\$")


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be three positive numbers (mm), got {spacing!r}")
    return sp  # type: ignore[return-value]


def _check_volumes(
    ct_hu: np.ndarray,
    gt_mask: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    ct = np.asarray(ct_hu)
    gt = np.asarray(gt_mask)
    if ct.ndim != 3:
        raise ValueError(f"ct_hu must be a 3D [x, y, z] array, got shape {ct.shape}")
    if gt.shape != ct.shape:
        raise ValueError(f"gt_mask shape {gt.shape} != ct_hu shape {ct.shape}")
    preds: dict[str, np.ndarray] = {}
    for name, p in predictions.items():
        arr = np.asarray(p)
        if arr.shape != ct.shape:
            raise ValueError(f"prediction {name!r} shape {arr.shape} != ct_hu shape {ct.shape}")
        if name not in thresholds:
            raise KeyError(f"no threshold given for prediction {name!r}")
        preds[str(name)] = arr
    return ct, gt.astype(bool), preds


def project_mip(volume: np.ndarray, axis: int) -> np.ndarray:
    """Maximum intensity projection along ``axis``, returned as the *display* array.

    The result is ``volume.max(axis).T``: rows index the view's vertical axis,
    columns its horizontal axis (see :data:`VIEWS`).
    """
    return np.asarray(volume).max(axis=axis).T


def orthogonal_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The slice ``index`` across ``axis`` as a display array (``.T`` as in MIPs)."""
    return np.take(np.asarray(volume), int(index), axis=axis).T


def _extent(view: View, shape: Sequence[int], spacing: Sequence[float]) -> list[float]:
    sh, sv = spacing[view.h_axis], spacing[view.v_axis]
    nh, nv = shape[view.h_axis], shape[view.v_axis]
    # voxel centres at i * spacing (mm)
    return [-0.5 * sh, (nh - 0.5) * sh, -0.5 * sv, (nv - 0.5) * sv]


def _setup_panel(ax, view: View, extent: Sequence[float], *, letters: bool = True) -> None:
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    if view.invert_h:
        ax.invert_xaxis()
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6, length=2, pad=1)
    ax.set_facecolor("black")
    if letters:
        kw = dict(transform=ax.transAxes, color="white", fontsize=7, fontweight="bold")
        ax.text(0.02, 0.5, view.left, ha="left", va="center", **kw)
        ax.text(0.98, 0.5, view.right, ha="right", va="center", **kw)
        ax.text(0.5, 0.98, view.top, ha="center", va="top", **kw)
        ax.text(0.5, 0.02, view.bottom, ha="center", va="bottom", **kw)


def _scale_bar(ax, view: View, extent: Sequence[float], length_mm: float | None = None) -> None:
    """Draw a white scale bar (length in mm) in the lower-left corner of the panel."""
    width = abs(extent[1] - extent[0])
    height = abs(extent[3] - extent[2])
    if length_mm is None:
        target = width / 4.0
        nice = [1, 2, 5, 10, 20, 25, 50, 100, 200, 500]
        length_mm = max([n for n in nice if n <= target] or [nice[0]])
    # The x axis may be inverted: compute positions in data coordinates from the
    # viewer's left edge.
    x_left = max(extent[0], extent[1]) if view.invert_h else min(extent[0], extent[1])
    direction = -1.0 if view.invert_h else 1.0
    x0 = x_left + direction * 0.06 * width
    x1 = x0 + direction * length_mm
    y0 = min(extent[2], extent[3]) + 0.09 * height
    ax.plot([x0, x1], [y0, y0], color="white", lw=1.5, solid_capstyle="butt", gid="scalebar")
    ax.text(
        (x0 + x1) / 2,
        y0 + 0.02 * height,
        f"{length_mm:g} mm",
        color="white",
        fontsize=5.5,
        ha="center",
        va="bottom",
    )


def _show_ct(ax, image: np.ndarray, window: tuple[float, float], extent) -> None:
    """The CT (a slice or a MIP) in a gray window; tests find it by ``gid="ct"``."""
    ax.imshow(
        image,
        cmap="gray",
        vmin=window[0],
        vmax=window[1],
        origin="lower",
        extent=extent,
        interpolation="nearest",
        gid="ct",
    )


def score_norm(threshold: float, decades: float = SHOWN_DECADES) -> mcolors.Normalize:
    """A method's colour scale: log10 of the score, its operating ``threshold`` mid-bar,
    ``decades`` below it at the bottom and 1 at the top (scores stay the image data)."""
    centre = float(np.log10(np.clip(threshold, 1e-30, 0.5)))  # keeps the upper half open
    low = centre - decades
    knots = ([low, centre, 0.0], [0.0, 0.5, 1.0])

    def forward(p: np.ndarray) -> np.ndarray:
        return np.interp(np.log10(np.clip(p, 10.0**low, 1.0)), *knots)

    def inverse(v: np.ndarray) -> np.ndarray:
        return 10.0 ** np.interp(v, knots[1], knots[0])

    return mcolors.FuncNorm((forward, inverse), vmin=10.0**low, vmax=1.0)


def overlay_scores(ax, prob2d: np.ndarray, extent, threshold: float, alpha: float = 0.85):
    """Scores from ``SHOWN_DECADES`` below ``threshold`` up, on :func:`score_norm`."""
    norm = score_norm(threshold)
    shown = np.ma.masked_less(np.asarray(prob2d, dtype=float), norm.vmin)
    return ax.imshow(
        shown,
        cmap=PROB_CMAP,
        norm=norm,
        origin="lower",
        extent=extent,
        interpolation="nearest",
        alpha=alpha,
        gid="prob",
    )


def _contour(ax, mask2d: np.ndarray, extent, color: str, lw: float, ls: str = "-"):
    mask2d = np.asarray(mask2d, dtype=float)
    if mask2d.min() == mask2d.max():  # nothing to outline
        return None
    nv, nh = mask2d.shape
    xs = np.linspace(extent[0], extent[1], nh + 1)
    ys = np.linspace(extent[2], extent[3], nv + 1)
    xc = 0.5 * (xs[:-1] + xs[1:])
    yc = 0.5 * (ys[:-1] + ys[1:])
    return ax.contour(xc, yc, mask2d, levels=[0.5], colors=[color], linewidths=lw, linestyles=ls)


def _legend_handles(with_prediction: bool) -> list:
    handles: list = [Patch(facecolor=GT_COLOR, edgecolor=GT_COLOR, alpha=0.6, label="Ground truth")]
    if with_prediction:
        handles.append(
            Line2D([], [], color=PRED_OUTLINE_COLOR, lw=1.2, label="Prediction ≥ threshold")
        )
        handles.append(
            Line2D([], [], color=GT_COLOR, lw=1.0, ls="--", label="Ground-truth outline")
        )
    return handles


def _prob_colorbar(fig: Figure, axes, label: str, threshold: float) -> None:
    """One method's colour bar: decades of score, its operating threshold marked mid-bar."""
    norm = score_norm(threshold)
    cb = fig.colorbar(
        ScalarMappable(norm=norm, cmap=PROB_CMAP), ax=axes, shrink=0.6, fraction=0.04, pad=0.02
    )
    decades = 10.0 ** np.arange(np.ceil(np.log10(norm.vmin)), 1)
    cb.set_ticks([*decades, threshold], labels=[*(f"{d:.0e}" for d in decades), "threshold"])
    cb.ax.axhline(threshold, color=PRED_OUTLINE_COLOR, lw=1.5)
    cb.set_label(
        f"{label} (log scale; threshold {threshold:.2g}, chosen on validation)", fontsize=7
    )
    cb.ax.tick_params(labelsize=6)


def _layout(shape, spacing, ncols: int) -> tuple[tuple[float, float], list[float]]:
    """Figure size (inches) and row height ratios so that mm aspect is kept."""
    mm = [n * s for n, s in zip(shape, spacing, strict=True)]
    ratios = [mm[v.v_axis] / mm[v.h_axis] for v in VIEWS]  # panel height / width
    panel_w = min(2.6, 10.5 / sum(ratios), 14.0 / ncols)
    return (panel_w * ncols + 1.4, panel_w * sum(ratios) + 1.6), ratios


def _titles(fig: Figure, title: str, extra: str, handles: list) -> None:
    """Bold figure title, and a bottom legend whose title is the orientation note."""
    head = " — ".join(_plain(t) for t in (title, extra) if t)
    if head:  # wrapped: titles carry what was found
        fig.suptitle(
            textwrap.fill(head, int(fig.get_figwidth() * 11)), fontsize=10, fontweight="bold"
        )
    note = textwrap.fill(_CONVENTION_NOTE, int(fig.get_figwidth() * 15))
    leg = fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        fontsize=7,
        frameon=False,
        title=note,
        title_fontsize=6.5,
    )
    leg.set_gid("legend")


# --------------------------------------------------------------------------- MIP figure


def mip_comparison_figure(
    ct_hu: np.ndarray,
    gt_mask: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    spacing: Sequence[float],
    title: str = "",
    *,
    window: tuple[float, float] = BONE_WINDOW,
    scale_bar: bool = True,
) -> Figure:
    """Maximum-intensity projections: ground truth versus each prediction.

    Rows are the sagittal, coronal and axial projections (:data:`VIEWS`); columns
    are ``"Ground truth"`` then one per key of ``predictions`` (in dict order).
    Each panel shows the MIP of ``ct_hu`` in ``window`` (gray) and:

    * ground-truth column: MIP of ``gt_mask`` filled in :data:`GT_COLOR`;
    * prediction columns: the MIP of the score in :data:`PROB_CMAP` on the method's own
      scale (:func:`score_norm`, its threshold mid-bar; one colour bar per method), its
      outline (thresholded MIP) in :data:`PRED_OUTLINE_COLOR`, and the ground-truth
      outline dashed in green.

    Panel axes are labelled ``"<view>|<column>"``; the first image of every panel is
    the CT MIP with array ``project_mip(ct_hu, view.axis)``.
    """
    sp = _check_spacing(spacing)
    ct, gt, preds = _check_volumes(ct_hu, gt_mask, predictions, thresholds)
    columns = ["Ground truth", *preds]
    figsize, ratios = _layout(ct.shape, sp, len(columns))
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(len(VIEWS), len(columns), squeeze=False, height_ratios=ratios)

    gt_cmap = mcolors.ListedColormap([GT_COLOR])
    for r, view in enumerate(VIEWS):
        extent = _extent(view, ct.shape, sp)
        ct_mip = project_mip(ct, view.axis)
        gt_mip = project_mip(gt, view.axis)
        for c, col in enumerate(columns):
            ax = axes[r, c]
            ax.set_label(f"{view.name}|{col}")
            _show_ct(ax, ct_mip, window, extent)
            if col == "Ground truth":
                ax.imshow(
                    np.ma.masked_equal(gt_mip.astype(np.uint8), 0),
                    cmap=gt_cmap,
                    vmin=0,
                    vmax=1,
                    origin="lower",
                    extent=extent,
                    interpolation="nearest",
                    alpha=0.6,
                    gid="gt",
                )
                _contour(ax, gt_mip, extent, GT_COLOR, 0.8)
            else:
                thr = float(thresholds[col])
                prob_mip = project_mip(preds[col], view.axis).astype(float)
                overlay_scores(ax, prob_mip, extent, thr)
                _contour(ax, prob_mip >= thr, extent, PRED_OUTLINE_COLOR, 0.9)
                _contour(ax, gt_mip, extent, GT_COLOR, 0.8, "--")
            _setup_panel(ax, view, extent)
            if scale_bar and c == 0:
                _scale_bar(ax, view, extent)
            if r == 0:
                label = (
                    col
                    if col == "Ground truth"
                    else f"{_plain(col)}\n(p ≥ {float(thresholds[col]):.2g})"
                )
                ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{view.name} MIP\nmm", fontsize=7)
    for c, col in enumerate(preds, start=1):
        _prob_colorbar(fig, axes[:, c].tolist(), f"{_plain(col)} score (MIP)", thresholds[col])
    _titles(fig, title, "maximum intensity projections", _legend_handles(bool(preds)))
    return fig


# --------------------------------------------------------------------------- slices


def slice_overlay_figure(
    ct_hu: np.ndarray,
    gt_mask: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    spacing: Sequence[float],
    center: tuple[int, int, int],
    title: str = "",
    *,
    window: tuple[float, float] = BONE_WINDOW,
) -> Figure:
    """Three orthogonal slices through ``center`` (voxel indices ``(i, j, k)``).

    Rows are the sagittal (``x = i``), coronal (``y = j``) and axial (``z = k``)
    slices. Columns are ``"CT + ground truth"`` then one per prediction. Every panel
    shows the CT slice in ``window`` and the ground-truth contour (green); prediction
    panels add the score on the method's own scale (:func:`score_norm`, from
    :data:`SHOWN_DECADES` below ``thresholds[name]``) in :data:`PROB_CMAP` and the
    ``thresholds[name]`` contour. Thin dotted lines mark the two other slice planes.
    """
    sp = _check_spacing(spacing)
    ct, gt, preds = _check_volumes(ct_hu, gt_mask, predictions, thresholds)
    center = tuple(int(c) for c in center)
    if len(center) != 3 or any(not 0 <= c < n for c, n in zip(center, ct.shape, strict=True)):
        raise ValueError(f"center {center} outside volume of shape {ct.shape}")
    columns = ["CT + ground truth", *preds]
    figsize, ratios = _layout(ct.shape, sp, len(columns))
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(len(VIEWS), len(columns), squeeze=False, height_ratios=ratios)
    for r, view in enumerate(VIEWS):
        extent = _extent(view, ct.shape, sp)
        idx = center[view.axis]
        ct_sl = orthogonal_slice(ct, view.axis, idx)
        gt_sl = orthogonal_slice(gt, view.axis, idx)
        ch = center[view.h_axis] * sp[view.h_axis]
        cv = center[view.v_axis] * sp[view.v_axis]
        for c, col in enumerate(columns):
            ax = axes[r, c]
            ax.set_label(f"{view.name}|{col}")
            _show_ct(ax, ct_sl, window, extent)
            if col in preds:
                thr = float(thresholds[col])
                prob_sl = orthogonal_slice(preds[col], view.axis, idx).astype(float)
                overlay_scores(ax, prob_sl, extent, thr, alpha=0.7)
                _contour(ax, prob_sl >= thr, extent, PRED_OUTLINE_COLOR, 0.9)
            _contour(ax, gt_sl, extent, GT_COLOR, 1.0)
            kw = dict(color="white", lw=0.4, ls=":", alpha=0.6)
            ax.axvline(ch, **kw)
            ax.axhline(cv, **kw)
            _setup_panel(ax, view, extent)
            if c == 0:
                _scale_bar(ax, view, extent)
                ax.set_ylabel(
                    f"{view.name}\n{'xyz'[view.axis]} = {idx} ({idx * sp[view.axis]:.1f} mm)",
                    fontsize=7,
                )
            if r == 0:
                label = (
                    col
                    if col not in preds
                    else f"{_plain(col)}\n(contour p = {float(thresholds[col]):.2g})"
                )
                ax.set_title(label, fontsize=8)
    for c, col in enumerate(preds, start=1):
        _prob_colorbar(fig, axes[:, c].tolist(), f"{_plain(col)} score", thresholds[col])
    handles = [Line2D([], [], color=GT_COLOR, lw=1.2, label="Ground truth")]
    if preds:
        handles.append(
            Line2D([], [], color=PRED_OUTLINE_COLOR, lw=1.2, label="Prediction ≥ threshold")
        )
    _titles(fig, title, f"slices through voxel {center}", handles)
    return fig


# --------------------------------------------------------------------------- curves


def _xy(curve, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, Mapping):
        x, y = curve[x_key], curve[y_key]
    else:
        x, y = curve
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{x_key} and {y_key} lengths differ: {x.shape} vs {y.shape}")
    return x, y


def _style(i: int) -> dict:
    return dict(
        color=METHOD_COLORS[i % len(METHOD_COLORS)],
        ls=_LINESTYLES[i % len(_LINESTYLES)],
        lw=1.8,
    )


def pr_curves_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray] | Mapping[str, np.ndarray]],
    average_precision: Mapping[str, float] | None = None,
    *,
    title: str = "Precision–recall",
) -> Figure:
    """All methods' precision–recall curves in one plot (recall on x).

    ``curves[name]`` is ``(recall, precision)`` (x first) or a mapping with keys
    ``"recall"`` and ``"precision"``. Curves are drawn with
    ``drawstyle="steps-post"``, one :class:`~matplotlib.lines.Line2D` per method
    (labelled ``"<name> (AP = 0.xxx)"`` when ``average_precision`` has the name).
    """
    average_precision = average_precision or {}
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        recall, precision = _xy(curve, "recall", "precision")
        label = _plain(name)
        if name in average_precision:
            label += f" (AP = {float(average_precision[name]):.3f})"
        ax.plot(recall, precision, drawstyle="steps-post", label=label, **_style(i))
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("Recall (sensitivity)")
    ax.set_ylabel("Precision")
    ax.set_title(_plain(title))
    ax.grid(True, alpha=0.3)
    ax.set_aspect("equal")
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    return fig


def froc_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray] | Mapping[str, np.ndarray]],
    *,
    title: str = "FROC",
    ticks: Sequence[float] = FROC_RATES,
) -> Figure:
    """Sensitivity versus average false positives per scan, log x axis.

    ``curves[name]`` is ``(fps_per_scan, sensitivity)`` (x first) or a mapping with
    keys ``"fps_per_scan"`` and ``"sensitivity"``. One line per method, the legend
    gives the mean sensitivity at ``ticks`` FP/scan, read off as the tables read it
    (``metrics.sensitivity_at``). Points with 0 FP/scan cannot be
    placed on the log axis and are dropped from the drawing (not from the mean).
    """
    fig = Figure(figsize=(5.6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    all_pos: list[float] = []
    for i, (name, curve) in enumerate(curves.items()):
        fps, sens = _xy(curve, "fps_per_scan", "sensitivity")
        mean_s = float(np.mean(list(sensitivity_at(fps, sens, ticks).values())))
        pos = fps > 0
        all_pos.extend(fps[pos].tolist())
        ax.plot(
            fps[pos],
            sens[pos],
            marker="o" if pos.sum() <= 30 else None,
            ms=3,
            label=f"{_plain(name)} (mean sens. = {mean_s:.3f})",
            **_style(i),
        )
    ax.set_xscale("log")
    lo = min([min(ticks), *all_pos]) / 1.3
    hi = max([max(ticks), *all_pos]) * 1.3
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(list(ticks)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("Average false positives per scan")
    ax.set_ylabel("Sensitivity")
    ticks_txt = ", ".join(f"{t:g}" for t in ticks)
    ax.set_title(f"{_plain(title)}\nlegend: mean sensitivity at {ticks_txt} FP/scan", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize=8)
    return fig


# --------------------------------------------------------------------------- attention


def attention_figure(
    image: np.ndarray,
    alphas: Sequence[np.ndarray],
    *,
    spacing: Sequence[float] = (1.0, 1.0),
    names: Sequence[str] | None = None,
    title: str = "Attention gates",
    window: tuple[float, float] | None = None,
) -> Figure:
    """A 2D slice and its attention-gate coefficient maps (one panel each).

    ``image`` is a 2D array ``[h, v]`` (same indexing as the volumes: first axis
    horizontal, second vertical, drawn with the second axis up); each ``alphas[i]`` is
    a 2D map ``[h_i, v_i]`` (any resolution, values in [0, 1]) stretched over the same
    field of view and overlaid on the image. ``spacing`` is the pixel size (mm) of
    ``image``. Panel axes are labelled ``"image"`` and ``"alpha|<name>"``.
    """
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {img.shape}")
    maps = [np.asarray(a, dtype=float).squeeze() for a in alphas]
    for a in maps:
        if a.ndim != 2:
            raise ValueError(f"attention maps must be 2D, got shape {a.shape}")
    names = (
        list(names)
        if names is not None
        else [f"gate {i + 1} ({a.shape[0]}×{a.shape[1]})" for i, a in enumerate(maps)]
    )
    if len(names) != len(maps):
        raise ValueError("names and alphas lengths differ")
    sh, sv = (float(s) for s in spacing)
    extent = [-0.5 * sh, (img.shape[0] - 0.5) * sh, -0.5 * sv, (img.shape[1] - 0.5) * sv]
    vmin, vmax = window if window is not None else (np.percentile(img, 1), np.percentile(img, 99))
    n = 1 + len(maps)
    fig = Figure(figsize=(2.6 * n + 0.8, 3.2), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    axes[0].set_label("image")
    axes[0].imshow(img.T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", extent=extent)
    axes[0].set_title("input slice", fontsize=8)
    for ax, a, name in zip(axes[1:], maps, names, strict=True):
        ax.set_label(f"alpha|{name}")
        ax.imshow(img.T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", extent=extent)
        ax.imshow(
            a.T,
            cmap="viridis",
            vmin=0.0,
            vmax=1.0,
            origin="lower",
            extent=extent,
            alpha=0.55,
            interpolation="bilinear",
            gid="alpha",
        )
        ax.set_title(_plain(name), fontsize=8)
    for ax in axes:
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
        ax.set_xlabel("mm", fontsize=7)
    if maps:
        sm = ScalarMappable(norm=mcolors.Normalize(0.0, 1.0), cmap="viridis")
        cb = fig.colorbar(sm, ax=list(axes[1:]), shrink=0.8)
        cb.set_label("attention coefficient α", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    fig.suptitle(_plain(title), fontsize=9)
    return fig


# --------------------------------------------------------------------------- findings

#: Colour of a vertebra the method calls fractured (Okabe-Ito vermillion).
FRACTURED_COLOR = "#D55E00"


def vertebra_findings_figure(
    ct_hu: np.ndarray,
    vertebra_labels: np.ndarray,
    vertebrae: Sequence[Mapping],
    spacing: Sequence[float],
    title: str = "",
    *,
    window: tuple[float, float] = BONE_WINDOW,
) -> Figure:
    """A sagittal slice through the spine with every vertebra outlined and named.

    Args:
        ct_hu: (X, Y, Z) CT in HU on a RAS voxel grid (``nib.as_closest_canonical``).
        vertebra_labels: (X, Y, Z) vertebra ids on the same grid.
        vertebrae: one method's rows of the vertebra table (``findings.vertebra_findings``):
            ``label``, ``vertebra``, ``fracture_probability``, ``fractured``, ``called_by``,
            ``grade`` and ``ground_truth`` (0/1 or ``None``).
        spacing: voxel spacing (mm) of the grid.
        title: figure title.

    A vertebra called fractured is outlined and named in vermillion with its score and
    Genant grade (``findings.call_label``), the others in white; a green "GT" marks
    ground-truth fractures. The slice is the one through the median left-right position of
    the labelled bone.
    """
    sp = _check_spacing(spacing)
    ct = np.asarray(ct_hu, dtype=np.float32)
    labels = np.asarray(vertebra_labels)
    if labels.shape != ct.shape:
        raise ValueError(f"vertebra label map shape {labels.shape} != CT shape {ct.shape}")
    view = VIEWS[0]  # sagittal
    bone_x = np.nonzero(labels.any(axis=(1, 2)))[0]
    index = int(np.median(bone_x)) if len(bone_x) else ct.shape[0] // 2
    extent = _extent(view, ct.shape, sp)
    fig = Figure(figsize=(5.0, 5.8), layout="constrained")
    ax = fig.subplots()
    ax.set_label("sagittal|findings")
    _show_ct(ax, orthogonal_slice(ct, view.axis, index), window, extent)
    sagittal = orthogonal_slice(labels, view.axis, index)
    for row in vertebrae:
        inside = sagittal == row["label"]
        if not inside.any():
            continue
        called = bool(row["fractured"])
        color = FRACTURED_COLOR if called else "white"
        _contour(ax, inside, extent, color, 1.3 if called else 0.6)
        v_rows, h_cols = np.nonzero(inside)
        h_mm, v_mm = h_cols.mean() * sp[view.h_axis], v_rows.mean() * sp[view.v_axis]
        text = call_label(row) if called else str(row["vertebra"])
        if row.get("ground_truth"):
            text += "  GT"
        ax.annotate(
            text,
            (h_mm, v_mm),
            xytext=(h_cols.max() * sp[view.h_axis] + 4.0, v_mm),  # in front of the body
            color=FRACTURED_COLOR
            if called
            else ("#9AE6C9" if row.get("ground_truth") else "white"),
            fontsize=6.5,
            fontweight="bold" if called else "normal",
            va="center",
            ha="right",
            gid=f"vertebra:{row['vertebra']}",
        )
    _setup_panel(ax, view, extent)
    _scale_bar(ax, view, extent)
    ax.set_title(
        f"{_plain(title)}\nsagittal x = {index} ({index * sp[0]:.1f} mm)\n"
        "vermillion: called fractured (score, Genant grade); GT: ground truth",
        fontsize=7,
    )
    return fig
