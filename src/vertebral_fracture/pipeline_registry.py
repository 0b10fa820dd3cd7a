"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# phantoms and scans -> trained models -> probability volumes -> fused volumes -> report
DEFAULT_PIPELINES = ("data_processing", "training", "inference", "fusion", "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; the default runs the five stages end to end.

    ``evaluate`` (trained models on a new folder of scans) is run by name only.
    """
    pipelines = find_pipelines(raise_errors=True)
    # Kedro loads only the pipelines a run asks for; the default needs all five.
    if all(name in pipelines for name in DEFAULT_PIPELINES):
        pipelines["__default__"] = sum((pipelines[n] for n in DEFAULT_PIPELINES), Pipeline([]))
    return pipelines
