"""Model variants are parameters: each is an ordinary `<view>.<variant>` namespace."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from kedro.config import OmegaConfigLoader

from tests.conftest import benchmark_script
from tests.kedro_project import ROOT
from vertebral_fracture.fusion import smooth_log_scores
from vertebral_fracture.phantoms import PhantomSetParams
from vertebral_fracture.phantoms.anatomy import LEVELS
from vertebral_fracture.pipelines import fusion, inference, training
from vertebral_fracture.pipelines.fusion.nodes import FusionParams, fuse_views
from vertebral_fracture.pipelines.views import (
    VIEWS,
    configure_variants,
    configured_variants,
    variants_of,
)
from vertebral_fracture.settings import CONFIG_LOADER_ARGS
from vertebral_fracture.training import TrainingParams

run_benchmark = benchmark_script("run_benchmark")


def _parameters(env: str, **runtime_params) -> dict:
    loader = OmegaConfigLoader(
        str(ROOT / "conf"), env=env, runtime_params=runtime_params, **CONFIG_LOADER_ARGS
    )
    return loader["parameters"]


@pytest.fixture
def restore_variants():
    before = configured_variants()
    yield
    configure_variants(before)


def test_bench_environment_defines_peer_and_ablation_and_one_seed_for_all():
    params = _parameters("bench", seed=7)
    assert params["variants"] == ["multitask", "baseline", "smp", "ungated"]
    for view in VIEWS:
        for variant in params["variants"]:
            p = TrainingParams.model_validate(params[view][variant]["training"])
            assert p.seed == 7  # `kedro run --params seed=7` reaches every model
        assert params[view]["smp"]["training"]["architecture"] == "smp_unet"
        assert params[view]["ungated"]["training"]["attention_gates"] is False
    assert set(params["variants"]) <= set(params["fusion"]["methods"])
    assert _parameters("bench")["axial"]["multitask"]["training"]["seed"] == 42


def test_bench_training_only_cases_hold_the_test_grid_and_slices_out():
    phantoms = PhantomSetParams.model_validate(_parameters("bench")["phantoms"])
    groups = phantoms.training_only_groups()
    assert any(g.spacing_range() != phantoms.spacing_range() for g in groups)
    held_out = _parameters("bench")["benchmark"]["out_of_domain"]
    first, last = (LEVELS.index(lv) for lv in held_out["appearance"]["levels"])
    for group in groups:
        assert group.n_cases > 0
        coarsest = group.spacing_range()[1]
        assert max(coarsest) < min(held_out["appearance"]["slice_thickness_mm"])
        top, bottom = (LEVELS.index(lv) for lv in group.appearance.levels)
        assert bottom < first or top > last  # held-out levels stay out


def test_bench_development_set_draws_phantoms_no_test_or_training_set_holds():
    params = _parameters("bench")
    bench = params["benchmark"]
    sets = run_benchmark.phantom_sets(bench)
    test_set, development = (PhantomSetParams(**sets[n]) for n in ("out_of_domain", "development"))
    phantoms = PhantomSetParams.model_validate(params["phantoms"])
    assert development.appearance == test_set.appearance  # the same held-out ranges

    def seeds(p: PhantomSetParams) -> set[int]:
        extra = sum(group.n_cases for group in p.training_only_groups())
        return set(range(p.seed, p.seed + p.n_cases + extra))

    assert not seeds(development) & (seeds(test_set) | seeds(phantoms))


def test_pipelines_have_a_namespace_per_configured_variant(restore_variants):
    configure_variants(["multitask", "smp"])
    trained = {n.name for n in training.create_pipeline().nodes}
    assert trained == {f"{v}.{m}.train_view_model" for v in VIEWS for m in ("multitask", "smp")}
    assert "axial.smp.model" in inference.create_pipeline().inputs()
    assert {"multitask.fused", "smp.fused"} <= fusion.create_pipeline().all_outputs()


def test_bad_variant_lists_are_refused():
    with pytest.raises(ValueError, match="parameter `variants` is missing"):
        variants_of({"phantoms": {}})
    with pytest.raises(ValueError, match="distinct"):
        configure_variants(["multitask", "multitask"])
    with pytest.raises(ValueError, match="identifiers"):
        configure_variants(["multi task"])


def test_a_variant_without_fusion_methods_is_named():
    params = FusionParams(methods={"multitask": ["product"]})
    with pytest.raises(ValueError, match="no entry for the variant 'smp'"):
        fuse_views({}, {}, {}, params, variant="smp")


def test_pydantic_defaults_are_the_methods():
    defaults = TrainingParams()
    assert defaults.seg_loss == "focal_tversky" and defaults.dropout == 0.2


def test_log_smoothing_is_in_millimetres_on_the_scans_grid():
    # an anisotropic scan: the same mm are 2 voxels in-plane and 1 voxel along z; only the
    # product is smoothed (the thesis mean stays as published)
    volume = np.full((15, 15, 15), 1e-3, dtype=np.float32)
    volume[7, 7, 7] = 0.9
    image = nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0]))
    views = [{"c": lambda: image} for _ in range(3)]
    params = FusionParams(methods={"multitask": ["product", "mean"]}, log_smoothing_mm=2.0)
    outputs = fuse_views(*views, params, variant="multitask")
    product = np.asarray(outputs["multitask_product/c"]().dataobj)
    np.testing.assert_allclose(product, smooth_log_scores(volume**3, (2.0, 2.0, 1.0)), rtol=1e-5)
    assert product[7, 7, 7] < 0.9**3 / 10  # the lone peak was pooled with its neighbours
    np.testing.assert_allclose(np.asarray(outputs["multitask_mean/c"]().dataobj), volume)
