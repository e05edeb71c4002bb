"""Datasets (a registry of loaders for the official formats) and deterministic splits."""

from labelleak.data.base import ImageDataset, from_uint8_arrays
from labelleak.data.registry import DATASETS, DatasetSpec, get_spec, load_dataset
from labelleak.data.splits import DataSplits, make_splits, validate_forget_classes

__all__ = [
    "DATASETS",
    "DataSplits",
    "DatasetSpec",
    "ImageDataset",
    "from_uint8_arrays",
    "get_spec",
    "load_dataset",
    "make_splits",
    "validate_forget_classes",
]
