"""Conversions between stored images (uint8 NHWC numpy) and network inputs (float NCHW torch).

Networks see [-1, 1], the range a tanh generator produces, so real and synthetic images go
through the same two functions and cannot drift apart in scaling.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_CHUNK = 1024  # images resized per interpolate call, to bound memory on large datasets


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1]."""
    _check_uint8_nhwc(images, "images")
    x = torch.from_numpy(_writable(images)).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1.0).contiguous()


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), rounded and clipped.

    Non-finite values raise instead of being cast, since a NaN from a diverged generator would
    otherwise turn into an arbitrary grey level and pass unnoticed.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must be shaped (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a float tensor, got {x.dtype}")
    x = x.detach()
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    pixels = ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy().copy()


def resize_images(images: np.ndarray, size) -> np.ndarray:
    """uint8 (N, H, W, C) -> uint8 (N, size, size, C), bilinear.

    `size` is an int (square) or an (H, W) pair. Shrinking is antialiased so that fine texture
    does not alias into patterns a classifier could latch onto; enlarging is plain bilinear.
    """
    _check_uint8_nhwc(images, "images")
    height, width = _parse_size(size)
    if images.shape[1:3] == (height, width):
        return images.copy()
    shrinking = height < images.shape[1] or width < images.shape[2]
    out = np.empty((len(images), height, width, images.shape[3]), dtype=np.uint8)
    for start in range(0, len(images), _CHUNK):
        chunk = torch.from_numpy(_writable(images[start:start + _CHUNK])).permute(0, 3, 1, 2).float()
        chunk = F.interpolate(chunk, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)
        out[start:start + _CHUNK] = chunk.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def _writable(images: np.ndarray) -> np.ndarray:
    """A contiguous, writable array: torch refuses read-only memory (e.g. Pillow's buffers)."""
    return images if images.flags.writeable and images.flags.c_contiguous else np.array(images, order="C")


def _parse_size(size) -> tuple:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    ):
        raise TypeError(f"size must be an int or an (H, W) pair of ints, got {size!r}")
    if min(size) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(size[0]), int(size[1])


def _check_uint8_nhwc(images, name: str) -> None:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"{name} must be shaped (N, H, W, C), got {images.shape}")
