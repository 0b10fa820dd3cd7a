"""Scoring trained models on a folder of scans."""

from vertebral_fracture.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
