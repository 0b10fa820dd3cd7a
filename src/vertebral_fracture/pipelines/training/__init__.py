"""One slice model per view and variant."""

from vertebral_fracture.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
