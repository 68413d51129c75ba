"""PNG grids of images (sample grids of generators, previews of synthetic sets).

Image I/O like the loaders beside it, so that training, which writes sample grids at every
snapshot, needs nothing from the report layer above it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from genmix._atomic import atomic_path

__all__ = ["save_image_grid"]


def save_image_grid(images, path, nrow: int, *, padding: int = 2, pad_value: int = 0) -> Path:
    """Tile uint8 images (N, H, W), (N, H, W, 1) or (N, H, W, 3) into one PNG, nrow per row.

    Images are separated and framed by `padding`-pixel borders, so the grid is
    cols * (W + padding) + padding wide, like torchvision's make_grid. Callers pass one class
    per row (nrow = images per class) to compare classes at a glance.
    """
    x = images
    if not isinstance(x, np.ndarray):
        raise TypeError(f"images must be a numpy array (N, H, W[, C]), got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, H, W), (N, H, W, 1) or (N, H, W, 3) array, "
                         f"got {images.shape}")
    if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")
    if not 0 <= int(pad_value) <= 255:
        raise ValueError(f"pad_value must be in [0, 255], got {pad_value}")
    n, h, w, ch = x.shape
    cols = min(int(nrow), n)
    rows = -(-n // cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, ch), pad_value, dtype=np.uint8)
    for i in range(n):
        top = padding + (i // cols) * (h + padding)
        left = padding + (i % cols) * (w + padding)
        grid[top:top + h, left:left + w] = x[i]
    image = Image.fromarray(grid[..., 0] if ch == 1 else grid)  # 2-D uint8 -> "L", 3 channels -> "RGB"
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp)
    return path
