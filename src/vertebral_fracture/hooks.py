"""Project hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kedro.config import MissingConfigException
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines
from pydantic import BaseModel

from vertebral_fracture.pipelines.views import configure_variants, variants_of


class VariantHooks:
    """Builds the pipelines for the model variants named in the run's parameters.

    Runs when the context exists and before Kedro first reads the pipelines. It reads the
    raw parameters (``context.params`` would validate them against the pipelines, which are
    not built yet) and, when the variants differ from those the pipelines were built for
    (another environment in the same process), has Kedro build them again.
    """

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        if configure_variants(variants_of(context.config_loader["parameters"])):
            pipelines.configure(f"{__package__}.pipeline_registry")


#: Plugins whose hooks Kedro must not register by itself: ``MlflowTracking`` does, when asked.
OPT_IN_PLUGINS = ("kedro_mlflow", "kedro-mlflow")
_MLFLOW_CONFIG = ["mlflow*", "mlflow*/**", "**/mlflow*"]  # where kedro-mlflow looks


class MlflowTracking:
    """Experiment tracking with MLflow through kedro-mlflow (the ``[tracking]`` extra), on
    only where the run's configuration holds an ``mlflow.yml`` (``kedro run --env mlflow``,
    or one written to ``conf/local`` by ``kedro mlflow init``).

    kedro-mlflow logs the parameters of every node and opens one MLflow run per pipeline
    run; on top of it this logs each model's per-epoch history (``<view>.<variant>.<column>``
    at step = epoch), the figures of ``metrics.json`` (``<method>.<figure>``), the
    checkpoints and ``report.html``.
    """

    def __init__(self) -> None:
        self._on = False

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        self._on = False  # settings' hooks outlive a session: decide afresh for each
        loader = context.config_loader
        loader.config_patterns.setdefault("mlflow", _MLFLOW_CONFIG)
        try:
            wanted = bool(loader["mlflow"])
        except MissingConfigException:
            wanted = False
        if not wanted:
            return
        try:
            from kedro_mlflow.framework.hooks import MlflowHook
        except ImportError as exc:
            raise ImportError(
                "Tracking is configured (mlflow.yml) but kedro-mlflow is not installed: "
                "pip install -e '.[tracking]'"
            ) from exc
        mlflow_hook = MlflowHook()
        mlflow_hook.after_context_created(context)
        context._hook_manager.register(mlflow_hook)  # it follows the rest of this run
        self._on = True

    @hook_impl
    def before_node_run(self, inputs: dict[str, Any]) -> None:
        """Log validated parameter models field by field (kedro-mlflow sees one string)."""
        if not self._on:  # mlflow (the tracking extra) may not be installed
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        for name, value in inputs.items():
            if name.startswith("params:") and isinstance(value, BaseModel):
                mlflow.log_params(
                    _flat(value.model_dump(mode="json"), name.removeprefix("params:"))
                )

    @hook_impl
    def after_node_run(self, catalog: Any, outputs: dict[str, Any]) -> None:
        if not self._on:  # mlflow (the tracking extra) may not be installed
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        for name, value in outputs.items():
            if name.endswith(".training_history"):
                model = name.removesuffix(".training_history")
                for row in value.to_dict("records"):
                    figures = {
                        f"{model}.{key}": float(v)
                        for key, v in row.items()
                        if key != "epoch" and isinstance(v, int | float) and np.isfinite(v)
                    }
                    mlflow.log_metrics(figures, step=int(row["epoch"]))
            elif name == "metrics":
                mlflow.log_metrics(_method_figures(value["methods"]))
            if name == "report" or name.endswith(".model"):
                path = getattr(catalog.get(name), "filepath", None)
                if path is not None and Path(path).is_file():
                    folder = None if name == "report" else f"models/{name.removesuffix('.model')}"
                    mlflow.log_artifact(str(path), artifact_path=folder)


def _flat(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Nested parameters as ``prefix.key.subkey`` -> value."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        flat.update(_flat(value, name) if isinstance(value, dict) else {name: value})
    return flat


def _method_figures(methods: dict[str, dict]) -> dict[str, float]:
    """Scalar figures of metrics.json as ``<method>.<figure>`` (FROC as ``froc_at_<rate>``)."""
    figures = {}
    for method, entry in methods.items():
        for key, value in entry.items():
            if key == "froc":
                for rate, sensitivity in value.items():
                    figures[f"{method}.froc_at_{rate}"] = sensitivity
            elif isinstance(value, int | float) and not isinstance(value, bool):
                figures[f"{method}.{key}"] = value
    return {k: float(v) for k, v in figures.items() if v is not None and np.isfinite(v)}
