"""Tests of vertebral_fracture.reporting (figures, 3D views, HTML report)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from vertebral_fracture.reporting import (
    attention_figure,
    figure_to_png_bytes,
    froc_figure,
    isosurface_figure,
    isosurface_html,
    mask_surface_mesh,
    mip_comparison_figure,
    pr_curves_figure,
    render_report,
    slice_overlay_figure,
    vertebra_findings_figure,
)
from vertebral_fracture.reporting.figures import (
    FRACTURED_COLOR,
    SHOWN_DECADES,
    VIEWS,
    score_norm,
)
from vertebral_fracture.reporting.html import markdown_table_to_html
from vertebral_fracture.reporting.volume3d import downsample_max, offline_plotlyjs

SHAPE = (40, 36, 32)
SPACING = (0.8, 0.7, 2.0)
THRESHOLDS = {"baseline_mean": 0.3, "multitask_product": 0.5}
EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*\\?["'`]?\s*(?:https?:)?//""", re.IGNORECASE)


def _synthetic():
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    r = np.hypot((x - 20) * SPACING[0], (y - 15) * SPACING[1])
    ct = rng.normal(20.0, 25.0, SHAPE)
    ct[r <= 9.0] = 350.0  # cancellous bone
    ct[(r > 7.5) & (r <= 9.0)] = 1000.0  # cortex
    ct = ct.astype(np.float32)
    gt = ((x - 22) ** 2 + (y - 19) ** 2 + ((z - 17) * 2) ** 2) <= 9  # small blob
    # baseline: box around the blob, bloated along x and z (mean-fusion like)
    baseline = np.zeros(SHAPE)
    baseline[10:34, 15:24, 8:27] = 0.45
    baseline[gt] = 0.9
    # proposed: localized on the blob
    proposed = np.where(gt, 0.95, 0.02)
    proposed[21, 19, 5] = 0.7  # a small false positive elsewhere
    preds = {"baseline_mean": baseline, "multitask_product": proposed}
    return ct, gt, preds


@pytest.fixture(scope="module")
def case():
    return _synthetic()


@pytest.fixture(scope="module")
def mip_fig(case):
    ct, gt, preds = case
    return mip_comparison_figure(ct, gt, preds, THRESHOLDS, SPACING, title="case 001")


def _panels(fig: Figure):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _panel(fig: Figure, label: str):
    (ax,) = [ax for ax in fig.axes if ax.get_label() == label]
    return ax


def _display_xy(ax, x_mm: float, y_mm: float) -> np.ndarray:
    return ax.transData.transform((x_mm, y_mm))


# --------------------------------------------------------------------------- figures


def test_mip_figure_layout_and_projections(case, mip_fig):
    ct, gt, preds = case
    columns = ["Ground truth", *preds]
    panels = _panels(mip_fig)
    assert len(panels) == 3 * len(columns)
    assert {ax.get_label() for ax in panels} == {f"{v.name}|{c}" for v in VIEWS for c in columns}
    for axis, view in enumerate(VIEWS):
        assert view.axis == axis
        for col in columns:
            ax = _panel(mip_fig, f"{view.name}|{col}")
            ct_img = ax.images[0]
            np.testing.assert_array_equal(ct_img.get_array(), ct.max(axis=axis).T)
            assert ct_img.origin == "lower"
            # extent in mm (voxel centres at i * spacing) and equal aspect
            h, v = view.h_axis, view.v_axis
            expected = [
                -0.5 * SPACING[h],
                (SHAPE[h] - 0.5) * SPACING[h],
                -0.5 * SPACING[v],
                (SHAPE[v] - 0.5) * SPACING[v],
            ]
            np.testing.assert_allclose(ct_img.get_extent(), expected)
            assert ax.get_aspect() == 1.0
            overlay = ax.images[1].get_array()
            if col == "Ground truth":
                gt_mip = gt.max(axis=axis).T
                np.testing.assert_array_equal(~np.ma.getmaskarray(overlay), gt_mip)
            else:
                prob_mip = preds[col].max(axis=axis).T
                shown = ~np.ma.getmaskarray(overlay)
                # scores from SHOWN_DECADES below the threshold, on a scale centred on it
                lowest = THRESHOLDS[col] * 10.0**-SHOWN_DECADES
                np.testing.assert_array_equal(shown, prob_mip >= lowest)
                np.testing.assert_allclose(np.ma.getdata(overlay)[shown], prob_mip[shown])
                norm = ax.images[1].norm
                assert float(norm(THRESHOLDS[col])) == pytest.approx(0.5)
                assert float(norm(1.0)) == pytest.approx(1.0)
    titles = [_panel(mip_fig, f"sagittal|{c}").get_title() for c in columns]
    assert titles[0] == "Ground truth"
    assert titles[1].startswith("baseline_mean") and "p ≥ 0.3)" in titles[1]
    assert titles[2].startswith("multitask_product") and "p ≥ 0.5)" in titles[2]


def test_mip_figure_anatomical_orientation(mip_fig):
    """Radiological display: R on viewer's left, A left (sagittal), S up, A up (axial)."""
    hi = {
        0: (SHAPE[0] - 1) * SPACING[0],
        1: (SHAPE[1] - 1) * SPACING[1],
        2: (SHAPE[2] - 1) * SPACING[2],
    }
    for view in VIEWS:
        ax = _panel(mip_fig, f"{view.name}|Ground truth")
        low = _display_xy(ax, 0.0, 0.0)
        high = _display_xy(ax, hi[view.h_axis], hi[view.v_axis])
        # the horizontal axis' high coordinate (x: patient right; y: anterior) is on the left
        assert high[0] < low[0], view.name
        # the vertical axis' high coordinate (z: superior; y: anterior in axial) is up
        assert high[1] > low[1], view.name
        assert not ax.yaxis_inverted()


def test_mip_figure_validates_inputs(case):
    ct, gt, preds = case
    with pytest.raises(ValueError, match="shape"):
        mip_comparison_figure(ct, gt[:-1], preds, THRESHOLDS, SPACING)
    with pytest.raises(KeyError, match="threshold"):
        mip_comparison_figure(ct, gt, preds, {"baseline_mean": 0.3}, SPACING)
    with pytest.raises(ValueError, match="spacing"):
        mip_comparison_figure(ct, gt, preds, THRESHOLDS, (1.0, 0.0, 1.0))


def test_tiny_product_scores_are_visible_mid_scale():
    # a product-fused score at its threshold sits mid-bar, a decade below it in the lower half
    norm = score_norm(2e-8)
    assert float(norm(2e-8)) == pytest.approx(0.5)
    assert 0.0 < float(norm(2e-9)) < 0.5 < float(norm(2e-7)) < 1.0
    assert float(norm(2e-8 * 10.0**-SHOWN_DECADES)) == pytest.approx(0.0)


def test_slice_overlay_figure(case):
    ct, gt, preds = case
    center = (22, 19, 17)
    fig = slice_overlay_figure(ct, gt, preds, THRESHOLDS, SPACING, center, title="c$1")
    panels = _panels(fig)
    assert len(panels) == 3 * (1 + len(preds))
    expected_ct = [ct[22, :, :].T, ct[:, 19, :].T, ct[:, :, 17].T]
    expected_p = {name: [p[22, :, :].T, p[:, 19, :].T, p[:, :, 17].T] for name, p in preds.items()}
    for r, view in enumerate(VIEWS):
        for col in ["CT + ground truth", *preds]:
            ax = _panel(fig, f"{view.name}|{col}")
            np.testing.assert_array_equal(ax.images[0].get_array(), expected_ct[r])
            if col in preds:
                prob = np.ma.getdata(ax.images[1].get_array())
                np.testing.assert_allclose(prob, expected_p[col][r])
                assert ax.collections, "threshold contour missing"
            else:
                assert len(ax.images) == 1
            assert ax.collections, "ground-truth contour missing"  # GT crosses the center
    with pytest.raises(ValueError, match="outside"):
        slice_overlay_figure(ct, gt, preds, THRESHOLDS, SPACING, (40, 0, 0))


def test_pr_curves_figure():
    rec_a = np.array([0.0, 0.5, 0.5, 1.0])
    prec_a = np.array([1.0, 1.0, 0.8, 0.6])
    rec_b = np.array([0.0, 0.25, 1.0])
    prec_b = np.array([1.0, 0.5, 0.3])
    fig = pr_curves_figure(
        {
            "baseline_mean": (rec_a, prec_a),
            "multitask_product": {"recall": rec_b, "precision": prec_b},
        },
        {"baseline_mean": 0.8123, "multitask_product": 0.456},
    )
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_xdata(), rec_a)
    np.testing.assert_array_equal(lines[0].get_ydata(), prec_a)
    np.testing.assert_array_equal(lines[1].get_xdata(), rec_b)
    np.testing.assert_array_equal(lines[1].get_ydata(), prec_b)
    assert all(line.get_drawstyle() == "steps-post" for line in lines)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["baseline_mean (AP = 0.812)", "multitask_product (AP = 0.456)"]
    assert "Recall" in ax.get_xlabel() and "Precision" in ax.get_ylabel()
    assert lines[0].get_color() != lines[1].get_color()


def test_froc_figure():
    fps_a = np.array([0.0, 0.25, 1.0, 3.0, 9.0])
    sens_a = np.array([0.0, 0.4, 0.6, 0.8, 0.9])
    fps_b = np.array([0.5, 2.0, 8.0])
    sens_b = np.array([0.7, 0.85, 0.95])
    fig = froc_figure({"A": (fps_a, sens_a), "B": {"fps_per_scan": fps_b, "sensitivity": sens_b}})
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.get_xticks(), [0.5, 1, 2, 4, 8])
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_xdata(), fps_a[1:])  # 0 FP dropped (log axis)
    np.testing.assert_array_equal(lines[0].get_ydata(), sens_a[1:])
    np.testing.assert_array_equal(lines[1].get_xdata(), fps_b)
    lo, hi = ax.get_xlim()
    assert lo <= 0.25 and hi >= 9.0
    # read off at 0.5/1/2/4/8 FP as the tables read it (metrics.sensitivity_at), interpolated
    expected_b = np.mean([0.7, 0.7 + 0.15 / 3, 0.85, 0.85 + 0.1 / 3, 0.95])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[1] == f"B (mean sens. = {expected_b:.3f})"
    assert "false positives per scan" in ax.get_xlabel()


def test_attention_figure():
    image = np.arange(32 * 24, dtype=float).reshape(32, 24)
    alphas = [np.full((16, 12), 0.2), np.linspace(0, 1, 8 * 6).reshape(8, 6)]
    fig = attention_figure(image, alphas, spacing=(0.5, 0.5))
    panels = _panels(fig)
    assert len(panels) == 3
    np.testing.assert_array_equal(panels[0].images[0].get_array(), image.T)
    np.testing.assert_array_equal(panels[2].images[1].get_array(), alphas[1].T)
    # coarse maps are stretched over the image's field of view
    np.testing.assert_allclose(panels[2].images[1].get_extent(), panels[0].images[0].get_extent())


def test_figure_to_png_bytes(mip_fig):
    png = figure_to_png_bytes(mip_fig, dpi=40)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


# --------------------------------------------------------------------------- 3D


def _edges(faces):
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def _signed_volume(verts, faces):
    a, b, c = (verts[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def test_mask_surface_mesh_exact_and_closed():
    mask = np.zeros((5, 6, 7), bool)
    mask[1:3, 2:4, 3:5] = True  # 2x2x2 voxels
    sp = (0.5, 1.0, 2.0)
    verts, faces = mask_surface_mesh(mask, sp, smooth_iterations=0)
    assert faces.shape == (6 * 4 * 2, 3)
    np.testing.assert_allclose(verts.min(0), [0.5 * 0.5, 1.5 * 1.0, 2.5 * 2.0])
    np.testing.assert_allclose(verts.max(0), [2.5 * 0.5, 3.5 * 1.0, 4.5 * 2.0])
    directed = _edges(faces)
    # closed and consistently oriented: every directed edge once, its reverse once
    as_set = {tuple(e) for e in directed.tolist()}
    assert len(as_set) == len(directed)
    assert all((b, a) in as_set for a, b in as_set)
    # outward orientation: positive enclosed volume = voxel count * voxel volume
    assert _signed_volume(verts, faces) == pytest.approx(8 * 0.5 * 1.0 * 2.0)


def test_mask_surface_mesh_smoothing_keeps_volume():
    x, y, z = np.meshgrid(*[np.arange(20)] * 3, indexing="ij")
    sphere = (x - 10) ** 2 + (y - 10) ** 2 + (z - 10) ** 2 <= 36
    verts, faces = mask_surface_mesh(sphere, (1, 1, 1), smooth_iterations=10)
    vol = _signed_volume(verts, faces)
    assert vol == pytest.approx(sphere.sum(), rel=0.1)
    assert mask_surface_mesh(np.zeros((3, 3, 3), bool))[1].shape == (0, 3)


def test_downsample_max_keeps_small_objects():
    mask = np.zeros((200, 70, 10), bool)
    mask[137, 69, 3] = True
    pooled, factors = downsample_max(mask, 64)
    assert factors == (4, 2, 1)
    assert max(pooled.shape) <= 64
    assert pooled.sum() == 1 and pooled[137 // 4, 69 // 2, 3]


def test_isosurface_figure_traces_in_mm(case):
    ct, gt, preds = case
    prob = preds["multitask_product"]
    fig = isosurface_figure(gt, prob, 0.5, SPACING, ct_hu=ct)
    names = [t.name for t in fig.data]
    assert len(names) == 3
    assert names[0].startswith("bone") and names[1] == "ground truth"
    assert names[2].startswith("prediction")
    assert fig.layout.scene.aspectmode == "data"
    pred = fig.data[2]
    pts = np.stack([np.asarray(pred.x), np.asarray(pred.y), np.asarray(pred.z)], axis=1)
    idx = np.argwhere(prob >= 0.5) * np.asarray(SPACING)
    # within one voxel of the thresholded voxels' bounding box (smoothing, half voxels)
    assert np.all(pts.min(0) >= idx.min(0) - np.asarray(SPACING) - 1e-6)
    assert np.all(pts.max(0) <= idx.max(0) + np.asarray(SPACING) + 1e-6)
    # an empty prediction gives no trace and says so
    fig2 = isosurface_figure(gt, np.zeros(SHAPE), 0.5, SPACING)
    assert [t.name for t in fig2.data] == ["ground truth"]
    assert "empty" in fig2.layout.title.text


def test_isosurface_html_full_and_fragment(case):
    ct, gt, preds = case
    doc = isosurface_html(gt, preds["baseline_mean"], 0.3, SPACING, ct_hu=ct, title=EVIL)
    assert doc.startswith("<!DOCTYPE html>")
    assert doc.count("plotly.js v") == 1 and "Plotly.newPlot" in doc
    assert not re.search(r"<script[^>]*\bsrc\s*=", doc, re.IGNORECASE)
    assert not EXTERNAL.search(doc)
    assert EVIL not in doc
    frag = isosurface_html(gt, preds["baseline_mean"], 0.3, SPACING, full_html=False)
    assert frag.lstrip().startswith("<div") and "Plotly.newPlot" in frag
    assert "plotly.js v" not in frag and len(frag) < 2_000_000


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_inlined_plotlyjs_is_valid_javascript(tmp_path):
    js = offline_plotlyjs()
    assert not EXTERNAL.search(js)
    path = tmp_path / "plotly.js"
    path.write_text(js, encoding="utf-8")
    subprocess.run(["node", "--check", str(path)], check=True, timeout=60)


# --------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def report(case, mip_fig):
    ct, gt, preds = case
    small = pr_curves_figure({"baseline_mean": ([0, 1], [1, 0.5])}, {"baseline_mean": 0.7})
    png = figure_to_png_bytes(small, dpi=30)
    views = {
        f"{EVIL} baseline": isosurface_html(
            gt, preds["baseline_mean"], 0.3, SPACING, ct_hu=ct, full_html=False
        ),
        "proposed": isosurface_figure(gt, preds["multitask_product"], 0.5, SPACING),
    }
    cases = pd.DataFrame(
        {"dice": [0.5, 0.75], "note": [EVIL, "ok"]}, index=pd.Index([EVIL, "case_002"], name="case")
    )
    summary = "| method | AP |\n|---|---|\n| baseline_mean | 0.41 |\n| <b>x</b> | 0.77 |"
    page = render_report(
        title=f"Report {EVIL}",
        findings=pd.DataFrame({"case": [EVIL], "ground truth": ["L1"]}),
        summary_table=summary,
        metrics={"baseline_mean": {"AP": 0.41, "dice": 0.2}, EVIL: {"AP": 0.77, "dice": 0.6}},
        figures={"MIP case 001": mip_fig, f"PR {EVIL}": png},
        case_tables=cases,
        interactive_views=views,
        notes=[f"note with {EVIL}"],
        dpi=40,
    )
    return page


def test_report_opens_with_what_was_found(report):
    assert report.index("What was found") < report.index("<h2>Summary")
    # its cells are sentences: the table is read left-aligned, unlike the figures' tables
    findings = report[report.index('id="findings"') : report.index('id="summary"')]
    assert 'data text"' in findings and 'data text"' not in report.replace(findings, "")


def test_vertebra_findings_figure_names_levels_and_marks_fractures():
    ct = np.full((30, 40, 60), -100.0, np.float32)
    labels = np.zeros(ct.shape, np.int16)
    labels[10:20, 15:30, 5:25], labels[10:20, 15:30, 32:52] = 30, 31  # L2 below L1
    ct[labels > 0] = 300.0
    rows = [
        {"label": 31, "vertebra": "L1", "fracture_probability": 0.8, "fractured": 1,
         "called_by": "score", "grade": 2, "ground_truth": 1},
        {"label": 30, "vertebra": "L2", "fracture_probability": 0.01, "fractured": 1,
         "called_by": "height", "grade": 2, "ground_truth": 0},
    ]  # fmt: skip
    fig = vertebra_findings_figure(ct, labels, rows, (1.0, 1.0, 1.0), title="case")
    texts = {t.get_gid(): t for t in fig.axes[0].texts if (t.get_gid() or "").startswith("v")}
    assert set(texts) == {"vertebra:L1", "vertebra:L2"}
    assert texts["vertebra:L1"].get_text() == "L1 (0.8, grade 2)  GT"
    assert texts["vertebra:L1"].get_color() == FRACTURED_COLOR
    assert texts["vertebra:L2"].get_text() == "L2 (0.01, grade 2, by height)"
    # L1 above L2 (superior up)
    assert texts["vertebra:L1"].xy[1] > texts["vertebra:L2"].xy[1]
    with pytest.raises(ValueError, match="label map shape"):
        vertebra_findings_figure(ct, labels[:-1], rows, (1.0, 1.0, 1.0))


def test_report_embeds_figures_as_data_uris(report):
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report)
    assert len(uris) == 2
    for b64 in uris:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")


def test_report_has_no_external_references(report):
    assert report.startswith("<!DOCTYPE html>")
    assert 'src="http' not in report.lower() and 'href="http' not in report.lower()
    assert "src='http" not in report.lower() and "href='http" not in report.lower()
    assert not EXTERNAL.search(report)


def test_report_escapes_data_strings(report):
    assert EVIL not in report
    assert "<b>x</b>" not in report
    # title, case id (table index and cell), metric method, figure name, view name, note
    assert report.count(EVIL_ESCAPED) >= 7
    assert "&lt;b&gt;x&lt;/b&gt;" in report
    assert "<td>baseline_mean</td>" in report  # markdown table rendered as HTML


def test_report_inlines_plotlyjs_once(report):
    assert report.count("plotly.js v") == 1
    assert report.count("Plotly.newPlot(") == 2
    assert report.index("plotly.js v") < report.index("Plotly.newPlot(")


def test_report_rejects_unsafe_views_and_needs_no_plotly_without_views(case):
    ct, gt, preds = case
    full = isosurface_html(gt, preds["baseline_mean"], 0.3, SPACING)
    with pytest.raises(ValueError, match="fragment"):
        render_report(title="t", interactive_views={"a": full})
    with pytest.raises(ValueError, match="external"):
        render_report(
            title="t", interactive_views={"a": '<script src="https://cdn.plot.ly/x.js"></script>'}
        )
    page = render_report(title="t", notes=["n"], metrics={"a": {"b": {"c": 1.5}}})
    assert "plotly.js v" not in page and "<script" not in page
    assert "a / b / c" in page and "1.5" in page


def test_markdown_table_fallback():
    assert markdown_table_to_html("not a table <i>") == "<pre>not a table &lt;i&gt;</pre>"
