"""The "oversample" control: real training images repeated to a synthetic set's count and balance.

A synthetic set appended to a small or imbalanced training set changes two things at once: it
adds new images, and it adds more images of some classes (a class-balanced set adds most to the
rare ones). Oversampling the real images to exactly the same count and class histogram changes
only the second, so a generative strategy that helps only as much as this control does owes its
gain to rebalancing, not to the generator.

`oversample_like(images, labels, classes)` gives one real image per row of a synthetic set (row
i: a training image of class classes[i], drawn with replacement within the class, seeded). Its
rows follow the synthetic set's row order, so `append_synthetic` with the same seed and ratio
picks the same rows from both: the appended real images have exactly the appended synthetic
images' count and class histogram.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from genmix.mixing.synthetic import SyntheticMixer

__all__ = ["OversampleMixer", "oversample_like"]


class OversampleMixer(SyntheticMixer):
    """Strategy "oversample": batches pass through unchanged; the oversampled real images were
    appended to the data set beforehand (`oversample_like` + `append_synthetic`)."""

    name = "oversample"


def oversample_like(images: np.ndarray, labels: np.ndarray, classes, *,
                    rng: Union[np.random.Generator, int, None] = None):
    """Real images standing in for a synthetic set row by row: (images (M, ...) uint8, index (M,)).

    images: the real training images (N, H, W[, C]); labels: their int classes (N,) or (N, 1);
    classes: the class of each synthetic row (M,) int (e.g. a synthetic set's train_labels, or
    the argmax of its soft labels). Row i is images[index[i]], a training image of class
    classes[i] drawn uniformly with replacement within that class from `rng` (a numpy Generator
    or seed). A class the synthetic set asks for but the training set lacks is a ValueError.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must hold {len(images)} integer class indices, got {labels.dtype} {labels.shape}")
    classes = np.asarray(classes)
    if classes.ndim == 2 and classes.shape[1] == 1:
        classes = classes[:, 0]
    if classes.ndim != 1 or (classes.size and not np.issubdtype(classes.dtype, np.integer)):
        raise ValueError(f"classes must be a 1-D array of class indices, got {classes.dtype} {classes.shape}")
    rng = np.random.default_rng(rng)
    index = np.empty(len(classes), dtype=np.int64)
    for c in np.unique(classes):
        rows = np.flatnonzero(classes == c)
        members = np.flatnonzero(labels == c)
        if len(members) == 0:
            raise ValueError(f"classes: the synthetic set has {len(rows)} image(s) of class {int(c)}, but the real "
                             f"training set has none to oversample")
        index[rows] = members[rng.integers(0, len(members), size=len(rows))]
    return images[index], index
