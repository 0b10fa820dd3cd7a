"""2D slice stacks of canonical (RAS) volumes, one stack per case and view, and back.

Views slice the canonical RAS array along one axis: sagittal along x (axis 0), coronal along
y (axis 1), axial along z (axis 2). Slices are padded (never cropped) so that nothing of the
scan is cut away: each in-plane side becomes at least ``min_size`` and a multiple of 32, the
total stride of the encoders. Training and inference both look at square windows that follow
the located spine (``spine_windows``, ``window_patch``); ``assemble_volume`` removes the padding
again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VIEW_AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
STRIDE = 32


@dataclass
class SliceStack:
    """All slices of one case in one view.

    Attributes:
        case_id: case identifier (file name stem without ``_ct``).
        view: one of ``VIEW_AXES``.
        images: (N, H, W) float16 windowed intensities in [0, 1].
        masks: (N, H, W) uint8 fracture labels (``Label_seg``), or None for inference-only cases.
        slice_numbers: (N,) int32 index of each slice along the view's axis of the canonical volume.
        volume_shape: (3,) shape of the canonical volume the slices came from.
        offset: (2,) position of the volume's in-plane origin inside the padded slice.
        affine: (4, 4) voxel-to-world matrix of the canonical volume, so predictions
            assembled from the slices can be resampled to any other grid.
        spine: (Z, 2) float32 (x, y) canonical voxel coordinates of the vertebral column centre
            in each axial slice z (``vertebral_fracture.spine.locate_spine``).
    """

    case_id: str
    view: str
    images: np.ndarray
    masks: np.ndarray | None
    slice_numbers: np.ndarray
    volume_shape: tuple[int, int, int] = (0, 0, 0)
    offset: tuple[int, int] = (0, 0)
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    spine: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))

    @property
    def labels(self) -> np.ndarray | None:
        """(N,) uint8 ``Label_class``: 1 where the slice holds any fracture pixel."""
        if self.masks is None:
            return None
        return self.masks.reshape(len(self.masks), -1).any(axis=1).astype(np.uint8)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no objects) for pickle-free storage."""
        arrays = {
            "case_id": np.array(self.case_id),
            "view": np.array(self.view),
            "images": self.images,
            "slice_numbers": self.slice_numbers,
            "volume_shape": np.asarray(self.volume_shape, dtype=np.int64),
            "offset": np.asarray(self.offset, dtype=np.int64),
            "affine": np.asarray(self.affine, dtype=np.float64),
            "spine": np.asarray(self.spine, dtype=np.float32),
        }
        if self.masks is not None:
            arrays["masks"] = self.masks
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SliceStack:
        if "spine" not in arrays:
            raise ValueError(
                f"The stored slices of {str(arrays['case_id'])!r} have no spine centre line "
                "(written by an older version): re-run `kedro run --pipeline data_processing`."
            )
        return cls(
            case_id=str(arrays["case_id"]),
            view=str(arrays["view"]),
            images=arrays["images"],
            masks=arrays.get("masks"),
            slice_numbers=arrays["slice_numbers"],
            volume_shape=tuple(int(n) for n in arrays["volume_shape"]),  # type: ignore[arg-type]
            offset=tuple(int(n) for n in arrays["offset"]),  # type: ignore[arg-type]
            affine=arrays["affine"],
            spine=arrays["spine"],
        )


def padded_size(size: int, min_size: int) -> int:
    """Smallest multiple of ``STRIDE`` that is at least ``max(size, min_size)``."""
    return int(np.ceil(max(size, min_size) / STRIDE) * STRIDE)


def extract_slices(
    case_id: str,
    image: np.ndarray,
    mask: np.ndarray | None,
    view: str,
    min_size: int,
    affine: np.ndarray | None = None,
    *,
    spine: np.ndarray,
) -> SliceStack:
    """Cut a canonical volume into the 2D slices of one view.

    Args:
        case_id: case identifier stored with the slices.
        image: (X, Y, Z) windowed intensities in [0, 1] on the canonical RAS grid.
        mask: (X, Y, Z) binary fracture mask on the same grid, or None.
        view: "axial", "coronal" or "sagittal".
        min_size: smallest in-plane side of the padded slices.
        affine: (4, 4) voxel-to-world matrix of the volume (identity when omitted).
        spine: (Z, 2) column centre (x, y) per axial slice, e.g. from ``locate_spine``.

    Returns:
        A ``SliceStack`` with (N, H, W) images, N the volume's extent along the view axis,
        the volume centred in each padded slice.
    """
    if view not in VIEW_AXES:
        raise ValueError(f"Unknown view '{view}'; choose from {sorted(VIEW_AXES)}.")
    spine = np.asarray(spine, dtype=np.float32)
    if spine.shape != (image.shape[2], 2):
        raise ValueError(f"spine must be ({image.shape[2]}, 2) for this volume, got {spine.shape}")
    axis = VIEW_AXES[view]
    planes = np.moveaxis(image, axis, 0)
    n, h, w = planes.shape
    out_h, out_w = padded_size(h, min_size), padded_size(w, min_size)
    top, left = (out_h - h) // 2, (out_w - w) // 2
    images = np.zeros((n, out_h, out_w), dtype=np.float16)
    images[:, top : top + h, left : left + w] = planes
    masks = None
    if mask is not None:
        masks = np.zeros((n, out_h, out_w), dtype=np.uint8)
        masks[:, top : top + h, left : left + w] = np.moveaxis(mask, axis, 0) > 0
    return SliceStack(
        case_id=case_id,
        view=view,
        images=images,
        masks=masks,
        slice_numbers=np.arange(n, dtype=np.int32),
        volume_shape=tuple(int(s) for s in image.shape),  # type: ignore[arg-type]
        offset=(top, left),
        affine=np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64),
        spine=spine,
    )


def assemble_volume(slice_maps: np.ndarray, stack: SliceStack) -> np.ndarray:
    """Put per-slice maps back into the canonical volume the stack was cut from.

    Args:
        slice_maps: (N, H, W) values for the stack's slices (e.g. fracture probabilities).
        stack: the ``SliceStack`` whose geometry the maps follow.

    Returns:
        (X, Y, Z) float32 volume; voxels no slice covers stay 0.
    """
    axis = VIEW_AXES[stack.view]
    volume = np.zeros(stack.volume_shape, dtype=np.float32)
    planes = np.moveaxis(volume, axis, 0)  # a view: writing to it fills ``volume``
    (h, w), (slice_h, slice_w) = planes.shape[1:], slice_maps.shape[1:]
    top, left = stack.offset  # volume plane origin inside the slice; negative after a crop
    rows = slice(max(top, 0), min(top + h, slice_h))
    cols = slice(max(left, 0), min(left + w, slice_w))
    planes[
        stack.slice_numbers,
        rows.start - top : rows.stop - top,
        cols.start - left : cols.stop - left,
    ] = slice_maps[:, rows, cols]
    return volume


def spine_windows(stack: SliceStack, size: int) -> np.ndarray:
    """``size x size`` windows that follow the stack's spine, in padded-slice coordinates.

    Axial slices get one window centred on their spine point. Coronal (sagittal) slices get
    tiles along z with stride ``size // 2``, the last one ending at the last z; a tile is
    centred in rows on the mean spine x (y) over its z range and applied to every slice within
    ``size / 2`` of the spine's y (x) range there, so each window sees the column across it.

    Returns:
        (M, 3) int64 rows ``(i, top, left)``: slice index into the stack and the window's
        top-left corner; windows may run past the slice edges (``window_patch`` pads).
    """
    spine = stack.spine
    if len(spine) != stack.volume_shape[2]:
        raise ValueError(
            f"SliceStack {stack.case_id!r} has a spine of {len(spine)} slices for a volume of "
            f"{stack.volume_shape[2]}: re-run `kedro run --pipeline data_processing`."
        )
    row_offset, col_offset = stack.offset
    half = size // 2
    slice_of = {int(n): i for i, n in enumerate(stack.slice_numbers)}
    if stack.view == "axial":
        rows = [
            (
                slice_of[z],
                round(spine[z, 0]) + row_offset - half,
                round(spine[z, 1]) + col_offset - half,
            )
            for z in range(len(spine))
            if z in slice_of
        ]
    else:
        # rows of coronal planes run along x (spine column 0), of sagittal planes along y
        along, across = (0, 1) if stack.view == "coronal" else (1, 0)
        n_across = stack.volume_shape[across]
        rows = []
        for start in _tile_starts(len(spine), size):
            tile = spine[start : start + size]
            centre = round(float(tile[:, along].mean()))
            first = max(0, int(np.floor(tile[:, across].min() - size / 2)))
            last = min(n_across - 1, int(np.ceil(tile[:, across].max() + size / 2)))
            rows += [
                (slice_of[n], centre + row_offset - half, start + col_offset)
                for n in range(first, last + 1)
                if n in slice_of
            ]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _tile_starts(length: int, size: int) -> list[int]:
    """Starts of ``size`` tiles with stride ``size // 2`` covering ``0 .. length-1``, the last
    one ending at ``length`` (a single tile at 0 when ``length <= size``)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, max(size // 2, 1)))
    return [*starts, length - size]


def add_window(planes: np.ndarray, index: int, top: int, left: int, values: np.ndarray) -> None:
    """Add a (size, size) window of ``values`` to ``planes[index]`` (N, H, W) in place; the
    parts outside the planes are dropped (the inverse of ``window_patch``)."""
    size = len(values)
    rows, cols, window_rows, window_cols = _overlap(planes.shape[1:], top, left, size)
    planes[index, rows, cols] += values[window_rows, window_cols]


def _overlap(
    shape: tuple[int, ...], top: int, left: int, size: int
) -> tuple[slice, slice, slice, slice]:
    """Rows and columns of an (H, W) plane inside a ``size`` window at (top, left), and the
    same pixels in window coordinates (empty when the window misses the plane)."""
    h, w = shape
    r0, r1 = int(np.clip(top, 0, h)), int(np.clip(top + size, 0, h))
    c0, c1 = int(np.clip(left, 0, w)), int(np.clip(left + size, 0, w))
    return slice(r0, r1), slice(c0, c1), slice(r0 - top, r1 - top), slice(c0 - left, c1 - left)


def window_patch(
    planes: np.ndarray, indices: np.ndarray, top: int, left: int, size: int
) -> np.ndarray:
    """``size x size`` windows of ``planes[indices]``, zero where they leave the planes.

    Args:
        planes: (N, H, W) slices (images or masks).
        indices: (C,) slice indices; all share the window.
        top, left: the window's top-left corner in slice coordinates (may be negative).

    Returns:
        (C, size, size) array of the planes' dtype.
    """
    out = np.zeros((len(indices), size, size), dtype=planes.dtype)
    rows, cols, window_rows, window_cols = _overlap(planes.shape[1:], top, left, size)
    out[:, window_rows, window_cols] = planes[indices, rows, cols]
    return out
