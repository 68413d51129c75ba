"""Argument checks shared by the generator families (StyleGAN2, DCGAN, diffusion).

Models take labels as float rows (one-hot or soft) and square power-of-two resolutions; the
checks live here so every family rejects bad input with the same message.
"""

from __future__ import annotations

import torch

__all__ = ["NOISE_MODES", "check_float_matrix", "check_resolution"]

# How a generator's per-pixel noise inputs are drawn: fresh, a fixed buffer, or not at all.
NOISE_MODES = ("random", "const", "none")


def check_resolution(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {minimum}, got {value!r}")
    return value


def check_float_matrix(name: str, t, width: int, batch: int | None = None) -> torch.Tensor:
    """Validate a (N, width) float matrix and return it."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, {width}), got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be floating point (labels are one-hot or soft float rows), "
                         f"got dtype {t.dtype}")
    if t.ndim != 2 or t.shape[1] != width:
        raise ValueError(f"{name} must have shape (N, {width}), got {tuple(t.shape)}")
    if batch is not None and t.shape[0] != batch:
        raise ValueError(f"{name} has batch size {t.shape[0]} but {batch} was expected")
    return t
