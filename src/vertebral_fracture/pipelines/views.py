"""The views and model variants every per-view pipeline is instantiated for (namespaces)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from vertebral_fracture.slicing import VIEW_AXES

VIEWS: tuple[str, ...] = tuple(VIEW_AXES)
VARIANTS: tuple[str, ...] = ("multitask", "baseline")  # proposed model, thesis baseline


def bind(func: Callable, **kwargs) -> Callable:
    """``func`` with structural keyword arguments (view, variant) fixed, keeping its name."""
    return functools.update_wrapper(functools.partial(func, **kwargs), func)
