"""Evaluation and the HTML report."""

from vertebral_fracture.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
