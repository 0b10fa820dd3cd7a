"""Evaluation pictures and the self-contained HTML report.

* :mod:`.figures`: matplotlib ``Figure`` builders (MIP comparison, orthogonal
  slices, precision-recall, FROC, attention maps, named vertebrae);
* :mod:`.volume3d`: interactive plotly 3D surfaces (ground truth vs prediction);
* :mod:`.html`: :func:`render_report`, one offline HTML page.
"""

from .figures import (
    attention_figure,
    froc_figure,
    mip_comparison_figure,
    pr_curves_figure,
    slice_overlay_figure,
    vertebra_findings_figure,
)
from .html import figure_to_png_bytes, render_report
from .volume3d import isosurface_figure, isosurface_html, mask_surface_mesh

__all__ = [
    "attention_figure",
    "figure_to_png_bytes",
    "froc_figure",
    "isosurface_figure",
    "isosurface_html",
    "mask_surface_mesh",
    "mip_comparison_figure",
    "pr_curves_figure",
    "render_report",
    "slice_overlay_figure",
    "vertebra_findings_figure",
]
