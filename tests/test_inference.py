"""Slice-wise inference and the inference node's checkpoint checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import centre_spine, make_image, reorient
from vertebral_fracture.datasets import SliceStackDataset
from vertebral_fracture.inference import attention_maps, predict_slices
from vertebral_fracture.models import build_model
from vertebral_fracture.pipelines.inference.nodes import InferenceParams, predict_view
from vertebral_fracture.preprocessing import canonical_grid
from vertebral_fracture.slicing import extract_slices, spine_windows
from vertebral_fracture.training import IncompatibleCheckpointError, TrainingParams


def _checkpoint(architecture: str, view: str = "axial", in_channels: int = 1) -> dict:
    torch.manual_seed(0)
    params = TrainingParams(architecture=architecture, in_channels=in_channels, slice_size=32)
    model = build_model(architecture, in_channels=in_channels)
    return {
        "params": params.model_dump(mode="json"),
        "model_state_dict": model.state_dict(),
        "view": view,
    }


def _native_case(axcodes: str = "LPS"):
    ct = reorient(
        make_image(np.zeros((30, 26, 20), np.int16), np.diag([0.9, 1.1, 1.7, 1])), axcodes
    )
    affine, shape = canonical_grid(ct.affine, ct.shape, (1.5, 1.5, 1.5))
    volume = np.random.default_rng(0).random(shape).astype(np.float32)
    stack = extract_slices("c1", volume, None, "axial", 32, affine, spine=centre_spine(shape))
    record = {
        "case_id": "c1",
        "split": "test",
        "shape": list(ct.shape),
        "affine": ct.affine.tolist(),
    }
    return ct, stack, record


@pytest.mark.parametrize("architecture", ["multitask", "baseline"])
def test_predict_slices_gives_probabilities_per_pixel_of_the_spine_windows(architecture):
    _, stack, _ = _native_case()
    model = build_model(architecture, in_channels=3)
    maps = predict_slices(model, stack, 32, batch_size=5, progress=False)
    assert maps.shape == stack.images.shape and maps.dtype == np.float32
    assert 0.0 <= maps.min() and maps.max() <= 1.0
    (i, top, left), *_ = spine_windows(stack, 32)
    window = maps[i, max(top, 0) : top + 32, max(left, 0) : left + 32]
    outside = maps[i].copy()
    outside[max(top, 0) : top + 32, max(left, 0) : left + 32] = np.nan
    assert np.nan_to_num(outside).max() == 0  # no window reaches there
    if architecture == "baseline":  # the thesis method paints one probability over the window
        assert window.std() < 1e-6 and window.min() > 0
    else:
        assert window.std() > 0


def test_memory_mapped_stack_gives_the_same_probabilities(tmp_path):
    _, stack, _ = _native_case()
    dataset = SliceStackDataset(filepath=str(tmp_path / "c1.npz"))
    dataset.save(stack)
    mapped = dataset.load()
    assert isinstance(mapped.images, np.memmap) and not mapped.images.flags.writeable
    model = build_model("multitask", in_channels=3)
    np.testing.assert_array_equal(
        predict_slices(model, mapped, 32, progress=False),
        predict_slices(model, stack, 32, progress=False),
    )
    image, _ = attention_maps(model, mapped, len(stack.images) // 2)
    np.testing.assert_array_equal(image, stack.images[len(stack.images) // 2].astype(np.float32))


class _Echo(torch.nn.Module):
    """A 'model' whose probability map is its input slice: shows where windows land."""

    in_channels = 1

    def fracture_probability(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_overlapping_windows_are_averaged_back_in_place():
    rng = np.random.default_rng(3)
    volume = rng.random((40, 30, 90)).astype(np.float32)
    z = np.arange(90)
    spine = np.stack([20 + 6 * np.sin(z / 20), 15 + 0 * z], axis=1).astype(np.float32)
    stack = extract_slices("c", volume, None, "coronal", 32, spine=spine)
    maps = predict_slices(_Echo(), stack, 32, batch_size=7, progress=False)
    covered = maps > 0
    top, left = stack.offset
    for zi, (x, y) in enumerate(spine):  # the column and 10 voxels around it are predicted
        rows = slice(top + round(x) - 10, top + round(x) + 10)
        assert covered[round(y) - 10 : round(y) + 10, rows, left + zi].all()
    np.testing.assert_allclose(maps[covered], stack.images[covered].astype(np.float32), atol=1e-6)


class _Spread(torch.nn.Module):
    """A 'model' whose map is its last channel minus its first: the context it was given."""

    in_channels = 3

    def fracture_probability(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1:] - x[:, :1]


class _ColumnRamp(torch.nn.Module):
    """A 'model' that is not mirror-symmetric: 0 at a window's first column, 1 at its last."""

    in_channels = 1

    def fracture_probability(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0.0, 1.0, x.shape[-1])
        return ramp.expand(x.shape[0], 1, *x.shape[-2:]).clone()


def test_mirrored_windows_are_mapped_back_before_averaging():
    _, stack, _ = _native_case()
    plain = predict_slices(_ColumnRamp(), stack, 32, progress=False)
    across = predict_slices(_ColumnRamp(), stack, 32, mirror_axis=1, progress=False)
    along = predict_slices(_ColumnRamp(), stack, 32, mirror_axis=0, progress=False)
    covered = plain > 0
    # a column ramp and its mirror image average to one half; mirrored along the rows the
    # ramp is its own mirror image
    np.testing.assert_allclose(across[covered], 0.5, atol=1e-6)
    np.testing.assert_allclose(along, plain, atol=1e-6)


def test_inference_reads_the_slices_of_the_trained_context_stride():
    n, size = 9, 32
    volume = np.broadcast_to(np.arange(n, dtype=np.float32) / 10, (size, size, n))
    stack = extract_slices("c", volume, None, "axial", size, spine=centre_spine(volume.shape))
    spread = {
        stride: predict_slices(_Spread(), stack, size, context_stride=stride, progress=False)
        for stride in (1, 3)
    }
    middle = n // 2  # away from the clamped ends: channels i - s and i + s
    np.testing.assert_allclose(spread[1][middle].max(), 0.2, atol=1e-3)
    np.testing.assert_allclose(spread[3][middle].max(), 0.6, atol=1e-3)


def test_predict_view_writes_on_the_native_grid():
    ct, stack, record = _native_case("PIR")
    outputs = predict_view(
        {"c1": lambda: stack},
        _checkpoint("multitask"),
        [record],
        TrainingParams(architecture="multitask", slice_size=32),
        InferenceParams(device="cpu"),
        view="axial",
    )
    image = outputs["c1"]()
    assert image.shape == ct.shape
    np.testing.assert_allclose(image.affine, ct.affine)
    assert image.get_data_dtype() == np.float32


@pytest.mark.parametrize(
    ("checkpoint", "training", "message"),
    [
        (
            _checkpoint("multitask", view="coronal"),
            TrainingParams(architecture="multitask"),
            "coronal view",
        ),
        (
            _checkpoint("baseline"),
            TrainingParams(architecture="multitask", slice_size=32),
            "architecture is 'baseline'",
        ),
        (
            _checkpoint("multitask", in_channels=3),
            TrainingParams(architecture="multitask", slice_size=32),
            "in_channels is 3",
        ),
        (  # windows of another size: another field of view than the model was trained on
            _checkpoint("multitask"),
            TrainingParams(architecture="multitask", slice_size=64),
            "slice_size is 32",
        ),
    ],
)
def test_incompatible_checkpoints_are_refused_with_the_reason(checkpoint, training, message):
    _, stack, record = _native_case()
    with pytest.raises(IncompatibleCheckpointError, match=message):
        predict_view(
            {"c1": lambda: stack}, checkpoint, [record], training, InferenceParams(), view="axial"
        )


def test_attention_maps_show_where_the_gated_model_looks():
    _, stack, _ = _native_case()
    model = build_model("multitask", in_channels=3)
    image, alphas = attention_maps(model, stack, 4)
    np.testing.assert_array_equal(image, stack.images[4].astype(np.float32))
    assert len(alphas) == 4  # one gate per skip junction
    h, w = stack.images.shape[1:]
    assert [a.shape for a in alphas] == [
        (h // 16, w // 16),
        (h // 8, w // 8),
        (h // 4, w // 4),
        (h // 2, w // 2),
    ]
    assert all(0.0 <= a.min() and a.max() <= 1.0 for a in alphas)


def test_channels_last_inference_matches_plain_layout() -> None:
    """The NHWC speed-up changes the memory layout only, not the probabilities."""
    torch.manual_seed(0)
    model = build_model("multitask").eval()
    volume = np.random.default_rng(1).random((40, 36, 8)).astype(np.float32)
    stack = extract_slices(
        "c1", volume, None, "axial", 32, np.eye(4), spine=centre_spine(volume.shape)
    )
    fast = predict_slices(model, stack, 64, batch_size=4, progress=False)  # the whole slices
    plain = model.to(memory_format=torch.contiguous_format)
    x = torch.from_numpy(stack.images[:, None].astype(np.float32))
    with torch.inference_mode():
        reference = plain.fracture_probability(x)[:, 0].numpy()
    np.testing.assert_allclose(fast, reference, atol=1e-5)
