"""Phantom generation, scan validation, canonical preprocessing and slicing per view."""

from vertebral_fracture.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
