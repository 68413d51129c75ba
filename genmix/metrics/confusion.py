"""Confusion matrix, the table every per-class metric is read from."""

from __future__ import annotations

import numpy as np


def as_class_indices(values, name: str, num_classes: int | None = None) -> np.ndarray:
    """A 1-D int64 array of class indices, checked, so later indexing cannot silently wrap."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {arr.min()}")
    if num_classes is not None and arr.size and arr.max() >= num_classes:
        raise ValueError(f"{name} must be < num_classes={num_classes}, got {arr.max()}")
    return arr


def confusion_matrix(pred, labels, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows are the true class, columns the prediction."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    pred = as_class_indices(pred, "pred", num_classes)
    labels = as_class_indices(labels, "labels", num_classes)
    if pred.shape != labels.shape:
        raise ValueError(f"pred and labels must have the same length, got {pred.size} and {labels.size}")
    k = int(num_classes)
    counts = np.bincount(labels * k + pred, minlength=k * k)
    return counts.reshape(k, k).astype(np.int64)
