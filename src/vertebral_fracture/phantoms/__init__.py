"""Synthetic thoraco-lumbar spine CT phantoms with vertebral fracture masks."""

from .anatomy import BONE, Tissue
from .config import PhantomSetParams
from .generator import Phantom, generate_phantom, generate_phantom_set
from .preview import phantom_preview_figure

__all__ = [
    "BONE",
    "Phantom",
    "PhantomSetParams",
    "Tissue",
    "generate_phantom",
    "generate_phantom_set",
    "phantom_preview_figure",
]
