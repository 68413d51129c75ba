"""SyntheticPool: the synthetic images and soft labels that "genmix" and "gemix" mix in.

The pool lives on the training device, so drawing a batch for every step is one gather on that
device rather than a host-to-device copy.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from genmix.mixing.class_index import ClassIndex

__all__ = ["SyntheticPool"]


class SyntheticPool:
    """Synthetic images (N, C, H, W) float in [-1, 1] and their soft labels (N, K).

    A sample's class is the argmax of its soft label; `sample(..., like_labels=y)` pairs each
    requested label with a synthetic image of the same class where the pool has one.
    """

    def __init__(self, images: torch.Tensor, soft_labels: torch.Tensor):
        if not isinstance(images, torch.Tensor) or not isinstance(soft_labels, torch.Tensor):
            raise TypeError("images and soft_labels must be torch.Tensors")
        if not images.is_floating_point() or images.ndim != 4:
            raise ValueError(f"images must be a float tensor of shape (N, C, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if soft_labels.ndim != 2 or soft_labels.shape[0] != images.shape[0]:
            raise ValueError(f"soft_labels must have shape ({images.shape[0]}, K), got {tuple(soft_labels.shape)}")
        if images.shape[0] == 0:
            raise ValueError("images: a SyntheticPool needs at least one image")
        self.images = images
        self.soft_labels = soft_labels.to(device=images.device, dtype=torch.float32)
        self.classes = self.soft_labels.argmax(dim=1)
        self._by_class = ClassIndex(self.classes, self.num_classes)

    @property
    def num_classes(self) -> int:
        return self.soft_labels.shape[1]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return f"SyntheticPool({len(self)} images of {tuple(self.images.shape[1:])}, {self.num_classes} classes)"

    def to(self, device) -> "SyntheticPool":
        return SyntheticPool(self.images.to(device), self.soft_labels.to(device))

    def sample_index(self, n: int, generator: Optional[torch.Generator] = None,
                     like_labels: Optional[torch.Tensor] = None, balanced: bool = False) -> torch.Tensor:
        """n pool indices (on the pool's device): uniform, or, given labels (n,) or (n, K), each one
        of the same class as its label (uniform over the pool where the class has no images).
        balanced=True without labels: each index's class uniform over the pool's classes, so a
        class the pool holds few images of is drawn as often as the others."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        gen_device = generator.device if generator is not None else "cpu"
        if balanced and like_labels is None:
            pick = torch.rand(n, generator=generator, device=gen_device, dtype=torch.float64).to(
                self.device, non_blocking=True)
            like_labels = self._by_class.pick_class(pick)
        u = torch.rand(n, generator=generator, device=gen_device, dtype=torch.float64).to(
            self.device, non_blocking=True)
        anywhere = (u * len(self)).long().clamp_(max=len(self) - 1)
        if like_labels is None:
            return anywhere
        wanted = self._classes_of(like_labels, n)
        return torch.where(self._by_class.counts[wanted] > 0, self._by_class.pick_within(wanted, u), anywhere)

    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               like_labels: Optional[torch.Tensor] = None, balanced: bool = False):
        """A batch (images (n, C, H, W), soft labels (n, K)) drawn as in `sample_index`."""
        index = self.sample_index(n, generator, like_labels, balanced)
        return self.images[index], self.soft_labels[index]

    def draw_like(self, x: torch.Tensor, generator: Optional[torch.Generator] = None,
                  like_labels: Optional[torch.Tensor] = None, balanced: bool = False):
        """A synthetic batch to mix with the real batch x: (images with x's shape, dtype and
        device, float32 soft labels on x's device, pool indices)."""
        if tuple(x.shape[1:]) != tuple(self.images.shape[1:]):
            raise ValueError(f"x: the batch has images of {tuple(x.shape[1:])} but the synthetic pool holds "
                             f"{tuple(self.images.shape[1:])}; load the pool with the training resolution "
                             "and channel count")
        index = self.sample_index(x.shape[0], generator, like_labels, balanced)
        images = self.images[index].to(device=x.device, dtype=x.dtype)
        return images, self.soft_labels[index].to(x.device), index

    def _classes_of(self, labels: torch.Tensor, n: int) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"like_labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.is_floating_point():
            if labels.shape != (n, self.num_classes):
                raise ValueError(f"like_labels: soft labels must have shape ({n}, {self.num_classes}), "
                                 f"got {tuple(labels.shape)}")
            # An arg-max lies in [0, K) by construction: no range check, which would read a GPU
            # tensor back to the host on every draw.
            return labels.argmax(dim=1).to(device=self.device, non_blocking=True)
        if labels.shape != (n,):
            raise ValueError(f"like_labels: class indices must have shape ({n},), got {tuple(labels.shape)}")
        labels = labels.to(device=self.device, dtype=torch.int64)
        if n and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"like_labels must lie in [0, {self.num_classes})")
        return labels

    @classmethod
    def from_npz(cls, path: Union[str, os.PathLike], num_classes: int,
                 resolution: Union[int, Sequence[int], None] = None, device="cpu") -> "SyntheticPool":
        """Load a synthetic set written by `genmix synthesize`.

        The npz holds train_images (N, H, W) or (N, H, W, C) uint8, train_labels (N, 1) and,
        for soft-labelled sets, soft_labels (N, K), used when present (else one-hot labels).
        Images are scaled to [-1, 1] and, if `resolution` (int or (H, W)) is given, resized
        bilinearly to it.
        """
        with np.load(path) as data:
            if "train_images" not in data.files:
                raise ValueError(f"path: {os.fspath(path)} has no train_images")
            images = data["train_images"]
            soft = data["soft_labels"] if "soft_labels" in data.files else None
            labels = data["train_labels"] if "train_labels" in data.files else None
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(f"path: train_images must be uint8 (N, H, W) or (N, H, W, C), got "
                             f"{images.dtype} {images.shape}")
        n = images.shape[0]
        if soft is not None:
            if soft.shape != (n, num_classes):
                raise ValueError(f"path: soft_labels must have shape ({n}, {num_classes}), got {soft.shape}")
            soft_labels = torch.from_numpy(np.asarray(soft, dtype=np.float32))
        elif labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"path: train_labels must hold {n} integer labels, got {labels.dtype} {labels.shape}")
            if n and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"path: train_labels must lie in [0, {num_classes})")
            soft_labels = F.one_hot(torch.from_numpy(labels.astype(np.int64)), num_classes).float()
        else:
            raise ValueError(f"path: {os.fspath(path)} has neither soft_labels nor train_labels")
        x = torch.from_numpy(images)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        x = x.float() / 127.5 - 1.0
        if resolution is not None:
            size = _resolution(resolution)
            if size != tuple(x.shape[2:]):
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return cls(x.contiguous().to(device), soft_labels.to(device))


def _resolution(resolution) -> tuple:
    size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"resolution must be an int or (H, W) of ints >= 1, got {resolution!r}")
    return size
