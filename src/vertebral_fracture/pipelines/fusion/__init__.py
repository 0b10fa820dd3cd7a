"""3D fusion of the per-view probability volumes."""

from vertebral_fracture.pipelines.fusion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
