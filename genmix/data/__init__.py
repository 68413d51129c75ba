"""Datasets: MedMNIST-layout npz files, class folders (PNG/JPEG, optional DICOM/NIfTI) and a
built-in phantom, all loaded into one validated :class:`MedicalDataset`."""

from .dataset import DataError, MedicalDataset, Split
from .load import load_dataset
from .npz import load_soft_labels, save_npz
from .phantom import make_phantom
from .splits import kfold_splits
from .subsets import describe_reduction, reduce_train
from .transforms import images_to_tensor, resize_images, tensor_to_images

__all__ = [
    "DataError",
    "MedicalDataset",
    "Split",
    "describe_reduction",
    "images_to_tensor",
    "kfold_splits",
    "load_dataset",
    "load_soft_labels",
    "make_phantom",
    "reduce_train",
    "resize_images",
    "save_npz",
    "tensor_to_images",
]
