"""Attention U-Net multi-task (segmentation + classification) model."""

from vertebral_fracture.models.multitask.model import AttentionUNetMultiTask

__all__ = ["AttentionUNetMultiTask"]
