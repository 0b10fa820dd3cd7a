"""The views and model variants every per-view pipeline is instantiated for (namespaces)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.slicing import VIEW_AXES

VIEWS: tuple[str, ...] = tuple(VIEW_AXES)
VARIANTS: tuple[str, ...] = ("multitask", "baseline")  # proposed model, thesis baseline


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
            for variant in VARIANTS
        ),
        Pipeline([]),
    )
