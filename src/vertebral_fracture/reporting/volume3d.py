"""Interactive 3D views (plotly ``Mesh3d``) of ground truth versus prediction.

No scikit-image: surfaces are extracted with :func:`mask_surface_mesh`, which takes
the boundary faces of a binary voxel mask (exact, closed, consistently oriented
outward) and rounds them with a few Taubin smoothing steps (no shrinkage).
Volumes larger than ``max_dim`` voxels along an axis are max-pooled first, so small
fractures never vanish and the HTML stays small.

Coordinates are millimetres in the RAS voxel frame: voxel ``[i, j, k]`` has its
centre at ``(i * sx, j * sy, k * sz)``.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from scipy import sparse

__all__ = [
    "BONE_COLOR",
    "GT_COLOR_3D",
    "PRED_COLOR_3D",
    "downsample_max",
    "isosurface_figure",
    "isosurface_html",
    "mask_surface_mesh",
    "offline_plotlyjs",
    "plotly_fragment",
]

GT_COLOR_3D = "#00B386"  # Okabe-Ito bluish green (as in the 2D figures)
PRED_COLOR_3D = "#D55E00"  # Okabe-Ito vermillion ("red")
BONE_COLOR = "#BBBBBB"

_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


# --------------------------------------------------------------------------- plotly.js


@lru_cache(maxsize=1)
def offline_plotlyjs() -> str:
    """The bundled plotly.js source, safe to inline in ``<script>...</script>``.

    The bundle contains a few links inside JavaScript string literals (plotly logo,
    map-tile attributions, a map-icon loader: never used by 3D meshes). So that the
    page has no literal ``href="http``/``src="http`` (any quote) at all, their ``h``
    is written as the JS escape ``\\x68``: the same string value at run time in
    every JS literal context (string, template, regular expression).
    """
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    js = re.sub(r"""((?:href|src)\s*=\s*\\?["'`])(http)""", r"\1\\x68ttp", js)
    if "</script" in js.lower():  # would end the inline <script> element early
        js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)
    return js


def plotly_fragment(fig: go.Figure, *, div_id: str | None = None) -> str:
    """``<div>`` + ``<script>`` for ``fig`` *without* the plotly.js library."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        config=_PLOTLY_CONFIG,
        div_id=div_id,
        default_width="100%",
        default_height="640px",
    )


# --------------------------------------------------------------------------- meshes


def downsample_max(volume: np.ndarray, max_dim: int = 64) -> tuple[np.ndarray, tuple[int, ...]]:
    """Max-pool ``volume`` by integer factors so that no axis exceeds ``max_dim``.

    Returns ``(pooled, factors)``. Block ``b`` covers voxels
    ``[b * f, (b + 1) * f)`` along each axis (the last block may be partial).
    """
    vol = np.asarray(volume)
    if max_dim < 1:
        raise ValueError("max_dim must be >= 1")
    factors = tuple(max(1, int(np.ceil(n / max_dim))) for n in vol.shape)
    if all(f == 1 for f in factors):
        return vol, factors
    pad = [(0, (-n) % f) for n, f in zip(vol.shape, factors, strict=True)]
    fill = False if vol.dtype == bool else (vol.min() if vol.size else 0)
    padded = np.pad(vol, pad, constant_values=fill)
    shape = []
    for n, f in zip(padded.shape, factors, strict=True):
        shape += [n // f, f]
    return padded.reshape(shape).max(axis=(1, 3, 5)), factors


def _taubin(
    verts: np.ndarray, edges: np.ndarray, iterations: int, lam: float = 0.5, mu: float = -0.53
) -> np.ndarray:
    n = len(verts)
    if iterations <= 0 or n == 0:
        return verts
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adj = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # duplicate edges count once
    deg = np.asarray(adj.sum(axis=1)).ravel()
    deg[deg == 0] = 1.0
    v = verts.copy()
    for _ in range(iterations):
        for factor in (lam, mu):
            v = v + factor * (adj @ v / deg[:, None] - v)
    return v


def mask_surface_mesh(
    mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    smooth_iterations: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Closed triangle surface of a binary ``[x, y, z]`` mask, in mm.

    Returns ``(verts, faces)``: ``verts`` ``(N, 3)`` float coordinates
    ``origin + corner * spacing`` (voxel centres at ``i * spacing``, so corners at
    ``(i ± 0.5) * spacing``) and ``faces`` ``(M, 3)`` vertex indices, two triangles
    per exposed voxel face, counter-clockwise seen from outside. With
    ``smooth_iterations=0`` the surface is the exact voxel boundary.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    sp = np.asarray(spacing, dtype=float)
    cshape = np.array(m.shape) + 1  # corner grid of the padded volume
    quads = []
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[a] = slice(0, -1)
        hi[a] = slice(1, None)
        inside_lo = m[tuple(lo)]
        inside_hi = m[tuple(hi)]
        for outward_pos, sel in ((True, inside_lo & ~inside_hi), (False, ~inside_lo & inside_hi)):
            v = np.argwhere(sel)  # voxel (lower side) indices in padded coords
            if len(v) == 0:
                continue
            base = v.copy()
            base[:, a] += 1  # the shared plane in corner coordinates
            eb = np.zeros(3, dtype=int)
            ec = np.zeros(3, dtype=int)
            eb[b] = 1
            ec[c] = 1
            corners = [base, base + eb, base + eb + ec, base + ec]  # CCW around +a
            if not outward_pos:
                corners = corners[::-1]
            quads.append(np.stack(corners, axis=1))  # (q, 4, 3)
    if not quads:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    q = np.concatenate(quads)  # (Q, 4, 3) corner coords
    lin = np.ravel_multi_index(q.reshape(-1, 3).T, tuple(cshape))
    uniq, inv = np.unique(lin, return_inverse=True)
    quad_idx = inv.reshape(-1, 4)
    corner = np.stack(np.unravel_index(uniq, tuple(cshape)), axis=1).astype(float)
    # padded corner k  <->  unpadded voxel-centre coordinate k - 1.5
    verts = (corner - 1.5) * sp + np.asarray(origin, dtype=float)
    faces = np.concatenate([quad_idx[:, [0, 1, 2]], quad_idx[:, [0, 2, 3]]])
    edges = np.concatenate(
        [quad_idx[:, [0, 1]], quad_idx[:, [1, 2]], quad_idx[:, [2, 3]], quad_idx[:, [3, 0]]]
    )
    verts = _taubin(verts, edges, smooth_iterations)
    return verts, faces.astype(np.int64)


def _mesh_trace(mask, spacing, max_dim, name, color, opacity, smooth) -> go.Mesh3d | None:
    pooled, factors = downsample_max(np.asarray(mask, dtype=bool), max_dim)
    sp = np.asarray(spacing, dtype=float) * np.asarray(factors)
    origin = (np.asarray(factors) - 1) / 2.0 * np.asarray(spacing, dtype=float)
    verts, faces = mask_surface_mesh(pooled, sp, origin=origin, smooth_iterations=smooth)
    if len(faces) == 0:
        return None
    return go.Mesh3d(
        x=verts[:, 0].astype(np.float32),
        y=verts[:, 1].astype(np.float32),
        z=verts[:, 2].astype(np.float32),
        i=faces[:, 0].astype(np.int32),
        j=faces[:, 1].astype(np.int32),
        k=faces[:, 2].astype(np.int32),
        name=name,
        color=color,
        opacity=opacity,
        showlegend=True,
        flatshading=False,
        lighting=dict(ambient=0.45, diffuse=0.8, specular=0.15, roughness=0.6),
        hoverinfo="name",
    )


def isosurface_figure(
    gt_mask: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    spacing: Sequence[float],
    ct_hu: np.ndarray | None = None,
    title: str = "Ground truth vs prediction (3D)",
    *,
    max_dim: int = 64,
    bone_hu: float = 250.0,
    smooth_iterations: int = 6,
    pred_name: str = "prediction",
) -> go.Figure:
    """Plotly figure: GT surface (green, semi-transparent), prediction ``prob >=
    threshold`` (vermillion) and, with ``ct_hu``, the bone ``ct_hu > bone_hu`` (light
    gray, very transparent). Axes in mm, true aspect (``aspectmode="data"``)."""
    gt = np.asarray(gt_mask)
    pr = np.asarray(prob)
    if gt.ndim != 3 or gt.shape != pr.shape:
        raise ValueError(f"gt_mask {gt.shape} and prob {pr.shape} must be equal 3D shapes")
    if ct_hu is not None and np.shape(ct_hu) != gt.shape:
        raise ValueError(f"ct_hu shape {np.shape(ct_hu)} != {gt.shape}")
    sp = tuple(float(s) for s in spacing)
    fig = go.Figure()
    empty: list[str] = []
    specs = []
    if ct_hu is not None:
        specs.append((np.asarray(ct_hu) > bone_hu, f"bone (CT > {bone_hu:g} HU)", BONE_COLOR, 0.12))
    specs.append((gt.astype(bool), "ground truth", GT_COLOR_3D, 0.45))
    specs.append((pr >= threshold, f"{pred_name} (p ≥ {threshold:.2f})", PRED_COLOR_3D, 0.75))
    for mask, name, color, opacity in specs:
        trace = _mesh_trace(mask, sp, max_dim, name, color, opacity, smooth_iterations)
        if trace is None:
            empty.append(name)
        else:
            fig.add_trace(trace)
    extent = [(-0.5 * s, (n - 0.5) * s) for n, s in zip(gt.shape, sp, strict=True)]
    axis = dict(showbackground=True, backgroundcolor="#f4f4f4", gridcolor="#dddddd")
    subtitle = f"<br><sub>empty: {', '.join(_html.escape(e) for e in empty)}</sub>" if empty else ""
    fig.update_layout(
        title=dict(text=_html.escape(title) + subtitle, x=0.02),
        scene=dict(
            xaxis=dict(title=dict(text="x (mm) → patient right"), range=extent[0], **axis),
            yaxis=dict(title=dict(text="y (mm) → anterior"), range=extent[1], **axis),
            zaxis=dict(title=dict(text="z (mm) → superior"), range=extent[2], **axis),
            aspectmode="data",
            camera=dict(eye=dict(x=-1.3, y=1.6, z=0.6), up=dict(x=0, y=0, z=1)),
        ),
        legend=dict(x=0.01, y=0.95, bgcolor="rgba(255,255,255,0.7)"),
        margin=dict(l=0, r=0, t=50, b=0),
        template="none",
    )
    return fig


_DOC = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:0.5em;}}</style>
<script>{plotlyjs}</script>
</head>
<body>
{body}
</body>
</html>
"""


def isosurface_html(
    gt_mask: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    spacing: Sequence[float],
    ct_hu: np.ndarray | None = None,
    title: str = "Ground truth vs prediction (3D)",
    *,
    full_html: bool = True,
    max_dim: int = 64,
    bone_hu: float = 250.0,
    pred_name: str = "prediction",
) -> str:
    """Interactive 3D view as HTML (see :func:`isosurface_figure`).

    ``full_html=True``: a complete, offline document with plotly.js inlined once.
    ``full_html=False``: a ``<div>`` fragment *without* plotly.js, to pass to
    :func:`vertebral_fracture.reporting.html.render_report` (which inlines the
    library exactly once for all views).
    """
    fig = isosurface_figure(
        gt_mask,
        prob,
        threshold,
        spacing,
        ct_hu,
        title,
        max_dim=max_dim,
        bone_hu=bone_hu,
        pred_name=pred_name,
    )
    frag = plotly_fragment(fig)
    if not full_html:
        return frag
    return _DOC.format(title=_html.escape(title), plotlyjs=offline_plotlyjs(), body=frag)
