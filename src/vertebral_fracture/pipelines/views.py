"""The views and model variants every per-view pipeline is instantiated for (namespaces).

The views are fixed by the geometry (``slicing.VIEW_AXES``). The model variants are a
parameter (``variants`` in ``parameters_training.yml``; ``conf/bench`` adds the peer and the
ablation): :class:`~vertebral_fracture.hooks.VariantHooks` reads it from the run's
configuration before Kedro builds the pipelines, so ``kedro run --env bench`` trains, infers,
fuses and reports every variant of that environment. Pipelines built outside a session's
hooks (``kedro viz`` runs without them) read the project's configuration in the current
folder, environment ``KEDRO_ENV``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.slicing import VIEW_AXES

VIEWS: tuple[str, ...] = tuple(VIEW_AXES)

_variants: tuple[str, ...] | None = None


def configure_variants(variants: Sequence[str]) -> bool:
    """Set the model variants the pipelines are built for; returns whether they changed."""
    global _variants
    names = tuple(variants)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"variants must be distinct names, got {list(variants)}")
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise ValueError(f"variant names must be identifiers (they name namespaces), got {bad}")
    changed = names != _variants
    _variants = names
    return changed


def variants_of(parameters: Mapping[str, Any]) -> Sequence[str]:
    """The ``variants`` entry of a run's (raw) parameters."""
    if "variants" not in parameters:
        raise ValueError(
            "parameter `variants` is missing: list the model variants to train, e.g. "
            "`variants: [multitask, baseline]` in conf/base/parameters_training.yml"
        )
    return parameters["variants"]


def configured_variants() -> tuple[str, ...]:
    """The model variants of this run (see :func:`configure_variants`); when none were set,
    those of the project configuration in the current folder (environment ``KEDRO_ENV``)."""
    if _variants is None:
        from kedro.framework.project import settings

        loader = settings.CONFIG_LOADER_CLASS(
            conf_source=str(Path.cwd() / settings.CONF_SOURCE),
            env=os.environ.get("KEDRO_ENV"),
            **settings.CONFIG_LOADER_ARGS,
        )
        configure_variants(variants_of(loader["parameters"]))
    assert _variants is not None
    return _variants


def bind(func: Callable, **kwargs) -> Callable:
    """``func`` with structural keyword arguments (view, variant) fixed, keeping its name."""
    return functools.update_wrapper(functools.partial(func, **kwargs), func)


def per_view_and_variant(
    make_node: Callable[[str, str], Node], *, shared_inputs: set[str], parameters: set[str]
) -> Pipeline:
    """One copy of a node per view and variant, in namespace ``<view>.<variant>``.

    Its ``slices`` input maps to ``<view>.slices``; ``shared_inputs`` and ``parameters`` keep
    their names; every other dataset is prefixed with the namespace.
    """
    return sum(
        (
            Pipeline(
                [make_node(view, variant)],
                namespace=f"{view}.{variant}",
                inputs={"slices": f"{view}.slices", **{name: name for name in shared_inputs}},
                parameters=parameters,
            )
            for view in VIEWS
            for variant in configured_variants()
        ),
        Pipeline([]),
    )
