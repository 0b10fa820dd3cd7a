"""A throw-away copy of the Kedro project with tiny parameters, for end-to-end runs."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from vertebral_fracture.pipelines.views import VIEWS

ROOT = Path(__file__).resolve().parents[1]
#: The tiny project runs the default variants plus the ablation, which only the parameters
#: add (variants are configuration, not code).
VARIANTS: tuple[str, ...] = (
    *yaml.safe_load((ROOT / "conf/base/parameters_training.yml").read_text())["variants"],
    "ungated",
)

TINY_TRAINING = {
    "slice_size": 32,
    "batch_size": 4,
    "max_epochs": 1,
    "steps_per_epoch": 2,
    "device": "cpu",
    "num_threads": 2,
}

TINY_PARAMETERS: dict[str, Any] = {
    # 64 mm fields: adult-size vertebrae, one or two fully in view
    "phantoms": {
        "n_cases": 8,
        "shape": [32, 32, 32],
        "spacing_mm": [2.0, 2.0, 2.0],
        "seed": 11,
        "training_only": [],  # the demo's training-only cases would dwarf 8 tiny ones
    },
    "data_processing": {
        "spacing_mm": [2.0, 2.0, 2.0],
        "min_slice_size": 32,
        "split": {"train": 0.5, "val": 0.25, "test": 0.25},
    },
    "inference": {"device": "cpu", "batch_size": 8},
    "variants": list(VARIANTS),
    **{view: {variant: {"training": TINY_TRAINING} for variant in VARIANTS} for view in VIEWS},
}


def make_tiny_project(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    """Copy conf/ and pyproject.toml to ``path``; tiny parameters go to conf/local."""
    shutil.copytree(ROOT / "conf", path / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copy(ROOT / "pyproject.toml", path / "pyproject.toml")
    (path / ".telemetry").write_text("consent: false\n")
    (path / "data").mkdir()
    (path / "src").mkdir()  # the package itself is installed; Kedro only checks the folder
    local = path / "conf" / "local"
    local.mkdir()
    (local / "parameters.yml").write_text(yaml.safe_dump(_merge(TINY_PARAMETERS, overrides or {})))
    return path


def run_pipeline(
    project: Path, pipeline: str | None = None, params: dict[str, Any] | None = None, **kwargs
) -> None:
    """Run a pipeline of the project copy through KedroSession from its root, as ``kedro run``."""
    bootstrap_project(project)
    with (
        contextlib.chdir(project),
        KedroSession.create(project_path=project, runtime_params=params or {}) as session,
    ):
        session.run(pipeline_names=[pipeline] if pipeline else None, **kwargs)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out
