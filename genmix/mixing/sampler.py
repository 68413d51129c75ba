"""Class-balanced sampling: every class drawn equally often, an alternative to topping up rare
classes with synthetic images."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

__all__ = ["class_balanced_sampler"]


def class_balanced_sampler(labels, generator: Optional[torch.Generator] = None) -> WeightedRandomSampler:
    """A sampler drawing len(labels) indices per epoch, with replacement, each class with equal
    probability. labels: int (N,) or (N, 1), or soft labels (N, K) (their argmax is the class)."""
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if labels.is_floating_point():
        if labels.ndim != 2:
            raise ValueError(f"labels: soft labels must have shape (N, K), got {tuple(labels.shape)}")
        labels = labels.argmax(dim=1)
    elif labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.dtype == torch.bool:
        raise ValueError(f"labels must be class indices (N,) or soft labels (N, K), got {tuple(labels.shape)}")
    if labels.numel() == 0:
        raise ValueError("labels must not be empty")
    if int(labels.min()) < 0:
        raise ValueError("labels must be >= 0")
    labels = labels.long().cpu()
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
