"""2D slice stacks of canonical (RAS) volumes, one stack per case and view, and back.

Views slice the canonical RAS array along one axis: sagittal along x (axis 0), coronal along
y (axis 1), axial along z (axis 2). Slices are padded (never cropped) so that nothing of the
scan is cut away: each in-plane side becomes at least ``min_size`` and a multiple of 32, the
total stride of the encoders. Training crops them to its patch size; inference runs on the
whole padded slice and ``assemble_volume`` removes the padding again.
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
    """

    case_id: str
    view: str
    images: np.ndarray
    masks: np.ndarray | None
    slice_numbers: np.ndarray
    volume_shape: tuple[int, int, int] = (0, 0, 0)
    offset: tuple[int, int] = (0, 0)
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))

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
        }
        if self.masks is not None:
            arrays["masks"] = self.masks
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SliceStack:
        return cls(
            case_id=str(arrays["case_id"]),
            view=str(arrays["view"]),
            images=arrays["images"],
            masks=arrays.get("masks"),
            slice_numbers=arrays["slice_numbers"],
            volume_shape=tuple(int(n) for n in arrays["volume_shape"]),  # type: ignore[arg-type]
            offset=tuple(int(n) for n in arrays["offset"]),  # type: ignore[arg-type]
            affine=arrays["affine"],
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
) -> SliceStack:
    """Cut a canonical volume into the 2D slices of one view.

    Args:
        case_id: case identifier stored with the slices.
        image: (X, Y, Z) windowed intensities in [0, 1] on the canonical RAS grid.
        mask: (X, Y, Z) binary fracture mask on the same grid, or None.
        view: "axial", "coronal" or "sagittal".
        min_size: smallest in-plane side of the padded slices.
        affine: (4, 4) voxel-to-world matrix of the volume (identity when omitted).

    Returns:
        A ``SliceStack`` with (N, H, W) images, N the volume's extent along the view axis,
        the volume centred in each padded slice.
    """
    if view not in VIEW_AXES:
        raise ValueError(f"Unknown view '{view}'; choose from {sorted(VIEW_AXES)}.")
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


def crop_to_bone(stack: SliceStack, size: int, bone_level: float = 0.5) -> SliceStack:
    """Crop or pad a stack's slices to ``size x size`` around the centroid of bright (bone) pixels.

    Training uses one patch size for every case; centring on bone keeps the spine in the
    patch when a scan's field of view is larger than the patch. ``bone_level`` is in windowed
    units (0.5 = the window level).

    Returns:
        A new ``SliceStack`` whose ``offset`` keeps it reassemblable with ``assemble_volume``.
    """
    n, h, w = stack.images.shape
    bright = stack.images >= bone_level
    if bright.any():
        rows, cols = np.nonzero(bright.any(axis=0))
        centre = (int(rows.mean()), int(cols.mean()))
    else:
        centre = (h // 2, w // 2)
    # top-left of the window in padded-slice coordinates, clamped inside the slice when it fits
    top = int(np.clip(centre[0] - size // 2, min(0, h - size), max(0, h - size)))
    left = int(np.clip(centre[1] - size // 2, min(0, w - size), max(0, w - size)))

    def window(planes: np.ndarray) -> np.ndarray:
        out = np.zeros((n, size, size), dtype=planes.dtype)
        src_r, src_c = (
            slice(max(top, 0), min(top + size, h)),
            slice(max(left, 0), min(left + size, w)),
        )
        dst_r = slice(src_r.start - top, src_r.stop - top)
        dst_c = slice(src_c.start - left, src_c.stop - left)
        out[:, dst_r, dst_c] = planes[:, src_r, src_c]
        return out

    return SliceStack(
        case_id=stack.case_id,
        view=stack.view,
        images=window(stack.images),
        masks=None if stack.masks is None else window(stack.masks),
        slice_numbers=stack.slice_numbers,
        volume_shape=stack.volume_shape,
        offset=(stack.offset[0] - top, stack.offset[1] - left),
        affine=stack.affine,
    )
