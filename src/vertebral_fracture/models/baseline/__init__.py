"""Classification-only baseline model."""

from vertebral_fracture.models.baseline.model import SliceClassifier

__all__ = ["SliceClassifier"]
