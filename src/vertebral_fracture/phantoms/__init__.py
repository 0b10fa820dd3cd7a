"""Synthetic thoraco-lumbar spine CT phantoms with vertebral fracture masks."""

from .anatomy import BONE, Tissue
from .config import PhantomAppearance, PhantomSetParams
from .generator import Phantom, generate_phantom, generate_phantom_set
from .preview import phantom_preview_figure

__all__ = [
    "BONE",
    "Phantom",
    "PhantomAppearance",
    "PhantomSetParams",
    "Tissue",
    "generate_phantom",
    "generate_phantom_set",
    "phantom_preview_figure",
]
