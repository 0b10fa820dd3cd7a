"""Joint image + mask augmentation (albumentations 2.x).

Geometric steps move all image channels and the mask together; the mask is resampled with
nearest-neighbour interpolation so it stays binary. Intensity and scanner steps (slice
thickness, pixel size, blur, sharpening, gamma, noise) touch the image only: albumentations
does these on 2D slices with the same seeded draws as the geometric steps (TorchIO and MONAI
work on 3D volumes, and the models train on slices). Thicker slices in a view cut across z
(axial) need the neighbouring slices: the dataset composes those (``SliceDataset``) with the
same weights (:func:`thick_slice_weights`).
Each call may take a ``seed``: the same seed gives the same transform, independent of call order
or of which DataLoader worker runs it (the sampler hands one seed per drawn slice).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np

from vertebral_fracture.slicing import VIEW_AXES
from vertebral_fracture.training.config import AugmentationParams


def left_right_axis(view: str) -> int | None:
    """The slice axis (0 rows, 1 columns) that runs left-right in ``view``'s slices.

    A left-right mirror is the one flip anatomy allows (a spine mirrored front to back or
    head to feet is no spine). Slices of the RAS volume keep the two other axes in order, so
    axial (x, y) and coronal (x, z) slices run left-right along their rows; sagittal slices
    are cut across x and have no left-right axis (``None``).
    """
    in_plane = [axis for axis in range(3) if axis != VIEW_AXES[view]]
    return in_plane.index(0) if 0 in in_plane else None


def slice_axis_in_plane(view: str) -> int | None:
    """The slice axis (0 rows, 1 columns) that runs along z (the scanner's slice direction)
    in ``view``'s slices; ``None`` for axial slices, which are cut across z."""
    in_plane = [axis for axis in range(3) if axis != VIEW_AXES[view]]
    return in_plane.index(2) if 2 in in_plane else None


#: OpenCV resizes (area interpolation) at most this many channels at once.
CV_MAX_CHANNELS = 4


def by_channel_groups(apply: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Wrap a transform's ``apply`` so it runs on groups of at most ``CV_MAX_CHANNELS``
    channels: a wide 2.5D context (``in_channels`` > 4) passes OpenCV's resize, and inputs of
    up to 4 channels are transformed exactly as before."""

    def grouped(self, img: np.ndarray, *args, **params) -> np.ndarray:
        if img.ndim < 3 or img.shape[-1] <= CV_MAX_CHANNELS:
            return apply(self, img, *args, **params)
        groups = range(0, img.shape[-1], CV_MAX_CHANNELS)
        parts = [apply(self, img[..., i : i + CV_MAX_CHANNELS], *args, **params) for i in groups]
        return np.concatenate([part.reshape(*part.shape[:2], -1) for part in parts], axis=-1)

    return grouped


class Downscale(A.Downscale):
    """albumentations' ``Downscale`` (coarser pixels), for any number of channels."""

    apply = by_channel_groups(A.Downscale.apply)


#: Share of training items whose slices are thickened (p of the thick-slice step).
THICK_SLICE_P = 0.3


def thick_slice_weights(positions: np.ndarray, n: int, factor: float, phase: float) -> np.ndarray:
    """(len(positions), n) weights that turn ``n`` fine samples along an axis into the values a
    scanner of ``factor`` times coarser slices gives back at ``positions`` after resampling.

    The scanner's slices are ``factor`` samples apart and as thick (partial volume: each is the
    area mean of the fine samples it covers), centred at ``phase + k * factor``; the pipeline
    then interpolates them linearly back onto the fine grid, as ``preprocessing.resample`` puts
    a thick-slice scan on the canonical grid. Every row sums to 1; ``factor`` 1 with ``phase``
    0 is the identity.
    """
    first = np.floor((-0.5 - phase) / factor)
    centres = phase + factor * np.arange(first, np.ceil((n - 0.5 - phase) / factor) + 1)
    low = np.clip(centres - factor / 2, -0.5, n - 0.5)[:, None]
    high = np.clip(centres + factor / 2, -0.5, n - 0.5)[:, None]
    fine = np.arange(n)[None, :]
    cover = np.clip(np.minimum(high, fine + 0.5) - np.maximum(low, fine - 0.5), 0.0, None)
    inside = cover.sum(axis=1) > 0
    area = cover[inside] / cover[inside].sum(axis=1, keepdims=True)  # (K, n)
    at = np.interp(positions, centres[inside], np.arange(len(area)))  # clamped at the ends
    below = np.floor(at).astype(int)
    above = np.minimum(below + 1, len(area) - 1)
    frac = (at - below)[:, None]
    return ((1.0 - frac) * area[below] + frac * area[above]).astype(np.float32)


def draw_thickening(
    uniform: Callable[[float, float], float], max_factor: float
) -> tuple[float, float]:
    """A slice-thickening draw from ``uniform(low, high)``: ``(factor in [1, max_factor],
    phase in [0, factor))``."""
    factor = uniform(1.0, max_factor)
    return factor, uniform(0.0, factor)


class AxisResample(A.ImageOnlyTransform):
    """Thicker slices along one image axis (:func:`thick_slice_weights`), by a factor drawn in
    ``[1, max_factor]`` at a random phase: the partial volume and interpolation of a scan
    with coarser slices, seen in the coronal and sagittal views."""

    def __init__(self, axis: int, max_factor: float, p: float = THICK_SLICE_P) -> None:
        super().__init__(p=p)
        self.axis, self.max_factor = axis, max_factor

    def get_params(self) -> dict[str, float]:
        factor, phase = draw_thickening(self.py_random.uniform, self.max_factor)
        return {"factor": factor, "phase": phase}

    def apply(
        self, img: np.ndarray, factor: float = 1.0, phase: float = 0.0, **params
    ) -> np.ndarray:
        n = img.shape[self.axis]
        weights = thick_slice_weights(np.arange(n), n, factor, phase)
        out = np.tensordot(weights, np.moveaxis(img, self.axis, 0), axes=1)
        return np.moveaxis(out, 0, self.axis).astype(img.dtype, copy=False)


class SliceAugmenter:
    """Random affine / flip / scanner look / brightness-contrast / noise on ``(H, W, C)``
    float32 in [0, 1].

    ``view`` sets which flip is plausible (:func:`left_right_axis`; sagittal slices are
    never flipped) and along which axis slices thicken (:func:`slice_axis_in_plane`).
    """

    def __init__(self, params: AugmentationParams, *, view: str) -> None:
        self.params = params
        # Thicker slices come first, as the scanner makes them; in views cut across z the
        # dataset composes each item's slices from thicker ones (:meth:`thickening_across_slices`)
        z_axis = slice_axis_in_plane(view)
        thickens = params.slice_thickness > 1
        self._thickens_across_slices = thickens and z_axis is None
        self._rng = np.random.default_rng()
        transforms: list[A.BasicTransform] = []
        if thickens and z_axis is not None:
            transforms.append(AxisResample(z_axis, params.slice_thickness))
        if params.rotation_deg > 0 or params.shift > 0 or params.scale > 0:
            transforms.append(
                A.Affine(
                    rotate=(-params.rotation_deg, params.rotation_deg),
                    translate_percent=(-params.shift, params.shift),
                    scale=(1.0 - params.scale, 1.0 + params.scale),
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0.0,
                    fill_mask=0,
                    p=params.affine_p,
                )
            )
        flip_axis = left_right_axis(view) if params.flip else None
        if flip_axis is not None:
            transforms.append(A.VerticalFlip(p=0.5) if flip_axis == 0 else A.HorizontalFlip(p=0.5))
        if params.in_plane_downscale < 1:
            transforms.append(
                Downscale(
                    scale_range=(params.in_plane_downscale, 1.0),
                    interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                    p=0.2,
                )
            )
        if params.blur_sigma > 0:
            transforms.append(A.GaussianBlur(sigma_limit=(0.1, params.blur_sigma), p=0.2))
        if params.sharpen > 0:
            transforms.append(A.Sharpen(alpha=(0.0, params.sharpen), lightness=(1.0, 1.0), p=0.2))
        if params.gamma > 0:
            limits = (100 * (1 - params.gamma), 100 * (1 + params.gamma))
            transforms.append(A.RandomGamma(gamma_limit=limits, p=0.3))
        if params.brightness_contrast > 0:
            transforms.append(
                A.RandomBrightnessContrast(
                    brightness_limit=params.brightness_contrast,
                    contrast_limit=params.brightness_contrast,
                    p=0.5,
                )
            )
        if params.noise_std > 0:
            transforms.append(A.GaussNoise(std_range=(0.0, params.noise_std), p=0.5))
        self._compose = A.Compose(transforms, mask_interpolation=cv2.INTER_NEAREST, seed=0)

    def thickening_across_slices(self, seed: int | None = None) -> tuple[float, float] | None:
        """In a view cut across z (axial), ``(factor, phase)`` of the thicker scanner slices to
        compose an item's slices from (:func:`thick_slice_weights`, p = ``THICK_SLICE_P``), or
        None. The same ``seed`` gives the same draw, independent of :meth:`__call__`'s."""
        if not self._thickens_across_slices:
            return None
        rng = self._rng if seed is None else np.random.default_rng((seed, 1))
        if rng.random() >= THICK_SLICE_P:
            return None
        return draw_thickening(rng.uniform, self.params.slice_thickness)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment ``image`` (H, W, C) float32 and ``mask`` (H, W) uint8 jointly.

        With ``seed`` the draw is reproducible; without, the pipeline's own stream continues.
        """
        if seed is not None:
            self._compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self._compose(image=image, mask=mask)
        result_image = np.clip(np.asarray(out["image"], dtype=np.float32), 0.0, 1.0)
        if result_image.ndim == 2:  # single-channel inputs may come back squeezed
            result_image = result_image[..., None]
        return result_image, np.asarray(out["mask"], dtype=np.uint8)


def build_augmenter(params: AugmentationParams, *, train: bool, view: str) -> SliceAugmenter | None:
    """The training augmenter of ``view``'s slices, or ``None`` (identity) for validation or
    when disabled."""
    if not train or not params.enabled:
        return None
    return SliceAugmenter(params, view=view)
