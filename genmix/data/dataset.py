"""The in-memory dataset every stage works on, and the checks that make it trustworthy.

Loaders of every format end by building a :class:`MedicalDataset`, so the invariants below
(uint8 NHWC images, int64 labels in range, three non-empty splits of one image shape) are
checked in one place and later stages never need to re-check them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """A problem with the user's data, worded as one line that names the file, key or split."""


@dataclass
class Split:
    """Images and labels of one split: images uint8 (N, H, W, C) with C in {1, 3}, labels int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise DataError(f"split images must be a uint8 numpy array, got {_describe(images)}")
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(f"split images must be shaped (N, H, W, C) with C in {{1, 3}}, got {images.shape}")
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
            raise DataError(f"split labels must be an int64 numpy array shaped (N,), got {_describe(labels)}")
        if len(images) != len(labels):
            raise DataError(f"split has {len(images)} images but {len(labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class MedicalDataset:
    """A classification dataset with train, val and test splits that share one image shape.

    `notes` records what loading changed about the data (e.g. images resized), so that
    :meth:`summary` can tell the user instead of hiding it.
    """

    name: str
    class_names: list[str]
    splits: dict[str, Split]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.class_names = [str(c) for c in self.class_names]
        if len(self.class_names) < 2:
            raise DataError(f"dataset '{self.name}' needs at least 2 classes, got {len(self.class_names)}")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataError(f"dataset '{self.name}' has duplicate class names: {self.class_names}")
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise DataError(f"dataset '{self.name}' is missing split(s) {', '.join(missing)}")
        shape = self.splits["train"].images.shape[1:]
        for split_name in SPLITS:
            split = self.splits[split_name]
            if not isinstance(split, Split):
                raise DataError(
                    f"dataset '{self.name}': split '{split_name}' must be a Split, got {type(split).__name__}"
                )
            if len(split) == 0:
                raise DataError(f"dataset '{self.name}': split '{split_name}' is empty")
            if split.images.shape[1:] != shape:
                raise DataError(
                    f"dataset '{self.name}': split '{split_name}' images are {split.images.shape[1:]}, "
                    f"train images are {shape}"
                )
            check_label_range(split.labels, self.num_classes, f"dataset '{self.name}', split '{split_name}'")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.splits["train"].images.shape[-1])

    @property
    def resolution(self) -> tuple:
        """(H, W) of every image."""
        _, h, w, _ = self.splits["train"].images.shape
        return int(h), int(w)

    def counts(self, split: str) -> np.ndarray:
        """Images per class in `split`, zeros included, so indices line up with class_names."""
        if split not in self.splits:
            raise ValueError(f"split must be one of {', '.join(self.splits)}, got {split!r}")
        return np.bincount(self.splits[split].labels, minlength=self.num_classes)

    def imbalance_ratio(self) -> float:
        """Largest over smallest class count in train (inf when a class has no training image)."""
        counts = self.counts("train")
        return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())

    def summary(self) -> str:
        h, w = self.resolution
        lines = [
            f"dataset: {self.name}",
            f"resolution: {h}x{w}, channels: {self.channels}, classes: {self.num_classes}",
        ]
        width = max(len(c) for c in self.class_names + ["split"])
        lines.append("  ".join(["split".ljust(5)] + [c.rjust(width) for c in self.class_names] + ["total".rjust(7)]))
        for split_name in SPLITS:
            counts = self.counts(split_name)
            cells = [str(int(n)).rjust(width) for n in counts] + [str(int(counts.sum())).rjust(7)]
            lines.append("  ".join([split_name.ljust(5)] + cells))
        lines.append(f"imbalance ratio (train, max/min): {self.imbalance_ratio():.2f}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def check_label_range(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Labels index class_names, so anything outside [0, num_classes) is a broken file."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise DataError(f"{where}: label {bad} is out of range for {num_classes} classes")


def as_uint8_images(images, where: str) -> np.ndarray:
    """Bring images into uint8 (N, H, W, C) or fail naming `where`.

    Accepted: (N, H, W) grayscale, (N, H, W, 1) or (N, H, W, 3). uint8 passes through. Other
    integer types pass when every value is in 0..255. Float images must be finite and are
    read as [0, 1] when their maximum is at most 1 (scaled by 255), otherwise as [0, 255]
    (rounded); negative values or values above 255 are an error, never silently clipped.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images must be shaped (N, H, W), (N, H, W, 1) or (N, H, W, 3), got {images.shape}")
    if images.dtype == np.uint8:
        return images
    numeric = np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    if images.dtype == np.bool_ or not numeric:
        raise DataError(f"{where}: images have dtype {images.dtype}, expected uint8 (or numbers in 0..255)")
    if images.size == 0:
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise DataError(f"{where}: images contain NaN or infinite values")
        if images.min() < 0 or images.max() > 255:
            raise DataError(
                f"{where}: float images span [{images.min():g}, {images.max():g}], expected [0, 1] or [0, 255]"
            )
        scale = 255.0 if images.max() <= 1 else 1.0
        return np.rint(images.astype(np.float64) * scale).astype(np.uint8)
    if images.min() < 0 or images.max() > 255:
        raise DataError(f"{where}: {images.dtype} images span [{images.min()}, {images.max()}], expected 0..255")
    return images.astype(np.uint8)


def as_int64_labels(labels, where: str) -> np.ndarray:
    """Bring labels into int64 (N,) or fail naming `where`.

    (N, 1) as stored by MedMNIST is flattened; (N, K) with K > 1 is multi-label data, which
    this package does not classify. Float labels pass only when every value is a whole number.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be shaped (N,) or (N, 1), got {labels.shape} (no multi-label)")
    if np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
        return labels.astype(np.int64)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all():
            raise DataError(f"{where}: labels contain NaN or infinite values")
        if (labels != np.round(labels)).any():
            raise DataError(f"{where}: labels must be whole numbers, found {labels[labels != np.round(labels)][0]:g}")
        return labels.astype(np.int64)
    raise DataError(f"{where}: labels have dtype {labels.dtype}, expected integers")


def make_split(images, labels, where: str, image_name: str = "images", label_name: str = "labels") -> Split:
    """Validate and convert one images/labels pair into a :class:`Split`.

    Errors read "<where>: <image_name> ..." so callers can name a file and key, or an argument.
    """
    images = as_uint8_images(images, f"{where}: {image_name}")
    labels = as_int64_labels(labels, f"{where}: {label_name}")
    if len(images) != len(labels):
        raise DataError(f"{where}: {image_name} has {len(images)} images but {label_name} has {len(labels)} labels")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{where}: {label_name}: label {int(labels.min())} is negative")
    return Split(images, labels)


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
