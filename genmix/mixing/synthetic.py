"""The "synth" strategy: synthetic images added to the training set itself, not mixed per batch.

`append_synthetic` enlarges (or class-balances) the real set once, before training; batches are
then drawn from the enlarged set as usual, so the strategy's BatchMixer is the identity.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from genmix.errors import UsageError
from genmix.mixing.base import BatchMixer

__all__ = ["SyntheticMixer", "append_synthetic"]


class SyntheticMixer(BatchMixer):
    """Strategy "synth": batches pass through unchanged (with soft labels), because the synthetic
    images were already appended to the data set by `append_synthetic`."""

    name = "synth"


def append_synthetic(images: np.ndarray, labels: np.ndarray, syn_images: np.ndarray, syn_soft: np.ndarray, *,
                     ratio: Optional[float] = 0.5, balance: bool = False,
                     rng: Union[np.random.Generator, int, None] = None):
    """The real set plus synthetic images: (images, soft_labels (N', K) float32), real first.

    images, syn_images: uint8 (N, H, W[, C]) of the same image shape; labels: int (N,) or (N, 1);
    syn_soft: (M, K) soft labels of the synthetic images (a synthetic image's class is their
    argmax). ratio: append round(ratio * N) synthetic images drawn without replacement (0.5:
    the "+50% synthetic" setting); None appends all of them. balance=True instead brings every
    class up to the size of the largest with synthetic images of that class (ratio is ignored).
    rng: numpy Generator or seed for the draws.
    """
    images, syn_images = np.asarray(images), np.asarray(syn_images)
    for name, arr in (("images", images), ("syn_images", syn_images)):
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4):
            raise ValueError(f"{name} must be uint8 of shape (N, H, W) or (N, H, W, C), got {arr.dtype} {arr.shape}")
    if images.shape[1:] != syn_images.shape[1:]:
        raise ValueError(f"syn_images hold images of {syn_images.shape[1:]} but images hold {images.shape[1:]}")
    syn_soft = np.asarray(syn_soft, dtype=np.float32)
    if syn_soft.ndim != 2 or syn_soft.shape[0] != len(syn_images):
        raise ValueError(f"syn_soft must have shape ({len(syn_images)}, K), got {syn_soft.shape}")
    num_classes = syn_soft.shape[1]
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must hold {len(images)} integer class indices, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) (the width of syn_soft)")
    if not isinstance(balance, (bool, np.bool_)):
        raise TypeError(f"balance must be a bool, got {type(balance).__name__}")
    rng = np.random.default_rng(rng)

    if balance:
        chosen = _balancing_picks(labels, syn_soft.argmax(axis=1), num_classes, rng)
    elif ratio is None:
        chosen = rng.permutation(len(syn_images))
    else:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0:
            raise ValueError(f"ratio must be None or a number >= 0, got {ratio!r}")
        count = int(round(ratio * len(images)))
        if count > len(syn_images):
            raise UsageError(f"ratio: {ratio} of {len(images)} real images needs {count} synthetic images, "
                             f"but only {len(syn_images)} were given")
        chosen = rng.choice(len(syn_images), size=count, replace=False)

    real_soft = np.eye(num_classes, dtype=np.float32)[labels]
    out_images = np.concatenate([images, syn_images[chosen]])
    out_soft = np.concatenate([real_soft, syn_soft[chosen]])
    return out_images, out_soft


def _balancing_picks(labels, syn_classes, num_classes, rng) -> np.ndarray:
    """Indices of synthetic images that top every class up to the largest class's count."""
    counts = np.bincount(labels, minlength=num_classes)
    target = counts.max() if len(labels) else 0
    picks = []
    for c in range(num_classes):
        need = int(target - counts[c])
        available = np.flatnonzero(syn_classes == c)
        if need > len(available):
            raise ValueError(f"balance: class {c} needs {need} synthetic images but syn_soft has only "
                             f"{len(available)} of that class")
        picks.append(rng.choice(available, size=need, replace=False))
    return np.concatenate(picks).astype(np.int64)
