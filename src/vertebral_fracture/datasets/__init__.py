"""Kedro datasets of the project: scan folders, NIfTI volumes, slice stacks, checkpoints, DICOM."""

from vertebral_fracture.datasets.arrays_dataset import ArraysDataset
from vertebral_fracture.datasets.checkpoint_dataset import TorchCheckpointDataset
from vertebral_fracture.datasets.dicom_dataset import DicomDataset
from vertebral_fracture.datasets.file_datasets import (
    CsvDataset,
    FigureDataset,
    JsonDataset,
    TextDataset,
)
from vertebral_fracture.datasets.nifti_dataset import NiftiDataset
from vertebral_fracture.datasets.scan_folder_dataset import ScanFolderDataset
from vertebral_fracture.datasets.slice_stack_dataset import SliceStackDataset

__all__ = [
    "ArraysDataset",
    "CsvDataset",
    "DicomDataset",
    "FigureDataset",
    "JsonDataset",
    "NiftiDataset",
    "ScanFolderDataset",
    "SliceStackDataset",
    "TextDataset",
    "TorchCheckpointDataset",
]
