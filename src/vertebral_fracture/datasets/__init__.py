"""Kedro datasets of the project: NIfTI volumes, slice stacks, checkpoints."""

from vertebral_fracture.datasets.nifti_dataset import NiftiDataset
from vertebral_fracture.datasets.slice_stack_dataset import SliceStackDataset

__all__ = ["NiftiDataset", "SliceStackDataset"]
