"""Per-view probability volumes on the input scans' grids."""

from vertebral_fracture.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
