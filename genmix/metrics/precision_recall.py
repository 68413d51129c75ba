"""Improved precision and recall of a generator in feature space (Kynkaenniemi et al., 2019).

Each feature vector gets a ball whose radius is the distance to its k-th nearest neighbour in
its own set (k = 3 by default, the paper's choice). The union of the real balls approximates
the support of the real distribution, the union of the generated balls that of the generated
one:

- precision: the share of generated samples inside some real ball (are the images realistic?);
- recall: the share of real samples inside some generated ball (is the data's variety covered?).

A generator that collapses onto a few good images keeps a high precision and loses recall,
which FID alone mixes into one number. Distances are squared Euclidean, computed in float64
block by block (``|a|^2 + |b|^2 - 2 a.b``, features centred first to limit cancellation), so
5,000 x 5,000 sets of 2048-d Inception features never need the full distance matrix at once.
A point counts as inside a ball when its distance is at most the radius, up to the rounding
error of that formula.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["knn_radii", "precision_recall", "precision_recall_per_class"]

_BLOCK_BYTES = 64 * 2 ** 20  # float64 distance block held at a time (per block of rows)
_ROUNDING = 64 * np.finfo(np.float64).eps  # relative slack of |a|^2 + |b|^2 - 2 a.b


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _as_features(features, name: str, k: int) -> np.ndarray:
    """(N, D) finite float64 with N > k (a point's k neighbours exclude itself)."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    f = np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {f.shape}")
    if f.dtype == np.bool_ or not (np.issubdtype(f.dtype, np.floating) or np.issubdtype(f.dtype, np.integer)):
        raise TypeError(f"{name} must be numeric, got dtype {f.dtype}")
    if f.shape[1] < 1:
        raise ValueError(f"{name} needs at least one column, got shape {f.shape}")
    if f.shape[0] < k + 1:
        raise ValueError(f"{name} needs at least k + 1 = {k + 1} rows for k = {k} nearest neighbours, "
                         f"got {f.shape[0]}")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} must be finite")
    return f


def _device(device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: {err}") from None


def _blocks(n_rows: int, n_cols: int, block_bytes: int):
    step = max(1, block_bytes // (8 * max(n_cols, 1)))
    for start in range(0, n_rows, step):
        yield start, min(start + step, n_rows)


def _squared_distances(a: torch.Tensor, a_sq: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor):
    """(squared distances, their rounding slack) between the rows of a and b."""
    scale = a_sq[:, None] + b_sq[None, :]
    d2 = (scale - 2.0 * (a @ b.T)).clamp_min_(0.0)
    return d2, scale.mul_(_ROUNDING)


def _radii_sq(x: torch.Tensor, x_sq: torch.Tensor, k: int, block_bytes: int) -> torch.Tensor:
    """Squared distance of each row to its k-th nearest other row (itself excluded)."""
    out = torch.empty(len(x), dtype=torch.float64, device=x.device)
    for start, stop in _blocks(len(x), len(x), block_bytes):
        d2, _ = _squared_distances(x[start:stop], x_sq[start:stop], x, x_sq)
        idx = torch.arange(start, stop, device=x.device)
        d2[idx - start, idx] = 0.0  # the point itself: exactly 0, whatever the rounding
        # The k + 1 smallest include the point itself at 0 (or a duplicate, equally at 0).
        out[start:stop] = torch.topk(d2, k + 1, dim=1, largest=False).values[:, k]
    return out


def _coverage(points: torch.Tensor, points_sq: torch.Tensor, centres: torch.Tensor, centres_sq: torch.Tensor,
              radii_sq: torch.Tensor, block_bytes: int) -> torch.Tensor:
    """Boolean per point: inside at least one ball (centre, radius)."""
    inside = torch.empty(len(points), dtype=torch.bool, device=points.device)
    for start, stop in _blocks(len(points), len(centres), block_bytes):
        d2, slack = _squared_distances(points[start:stop], points_sq[start:stop], centres, centres_sq)
        inside[start:stop] = (d2 <= radii_sq[None, :] + slack).any(dim=1)
    return inside


def _prepared(real: np.ndarray, fake: np.ndarray, device: torch.device):
    centre = real.mean(axis=0)  # centring keeps |a|^2 small next to the distances themselves
    r = torch.from_numpy(real - centre).to(device)
    f = torch.from_numpy(fake - centre).to(device)
    return r, (r * r).sum(1), f, (f * f).sum(1)


def knn_radii(features, k: int = 3, *, device="cpu", block_bytes: int = _BLOCK_BYTES) -> np.ndarray:
    """(N,) distance of each row of (N, D) features to its k-th nearest other row."""
    k = _check_k(k)
    f = _as_features(features, "features", k)
    x = torch.from_numpy(f - f.mean(axis=0)).to(_device(device))
    with torch.inference_mode():
        return _radii_sq(x, (x * x).sum(1), k, block_bytes).sqrt().cpu().numpy()


def precision_recall(real_features, fake_features, k: int = 3, *, device="cpu",
                     block_bytes: int = _BLOCK_BYTES) -> dict:
    """Improved precision and recall of (N, D) generated features against (M, D) real ones.

    Returns {"precision", "recall", "k", "n_real", "n_fake"}. Both sets need more than k rows.
    `device` runs the distance blocks there (a GPU for large sets); `block_bytes` bounds the
    memory of one block of the distance matrix.
    """
    k = _check_k(k)
    real = _as_features(real_features, "real_features", k)
    fake = _as_features(fake_features, "fake_features", k)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real_features and fake_features must have the same dimension, "
                         f"got {real.shape[1]} and {fake.shape[1]}")
    if isinstance(block_bytes, bool) or not isinstance(block_bytes, (int, np.integer)) or block_bytes < 1:
        raise ValueError(f"block_bytes must be a positive int, got {block_bytes!r}")
    with torch.inference_mode():
        r, r_sq, f, f_sq = _prepared(real, fake, _device(device))
        real_radii = _radii_sq(r, r_sq, k, block_bytes)
        fake_radii = _radii_sq(f, f_sq, k, block_bytes)
        precision = _coverage(f, f_sq, r, r_sq, real_radii, block_bytes).double().mean().item()
        recall = _coverage(r, r_sq, f, f_sq, fake_radii, block_bytes).double().mean().item()
    return {"precision": float(precision), "recall": float(recall), "k": k,
            "n_real": int(real.shape[0]), "n_fake": int(fake.shape[0])}


def _labels(labels, name: str, n: int, num_classes: int) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.size != n:
        raise ValueError(f"{name} must be (N,) class indices with one per feature row ({n}), got shape {y.shape}")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must be in [0, {num_classes}), got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def precision_recall_per_class(real_features, real_labels, fake_features, fake_labels, class_names,
                               k: int = 3, *, device="cpu", block_bytes: int = _BLOCK_BYTES) -> list:
    """Precision and recall within each class: real class-c features against generated class-c ones.

    Returns one {"name", "precision", "recall", "n_real", "n_fake"} per class. A class with at
    most k rows on either side gets None values and a "note" instead of an error.
    """
    k = _check_k(k)
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
        raise TypeError("class_names must be a list of str")
    names = list(class_names)
    if not names:
        raise ValueError("class_names must not be empty")
    real = np.asarray(real_features.detach().cpu() if isinstance(real_features, torch.Tensor) else real_features)
    fake = np.asarray(fake_features.detach().cpu() if isinstance(fake_features, torch.Tensor) else fake_features)
    for name, f in (("real_features", real), ("fake_features", fake)):
        if f.ndim != 2:
            raise ValueError(f"{name} must be 2-D (N, D), got shape {f.shape}")
    y_real = _labels(real_labels, "real_labels", real.shape[0], len(names))
    y_fake = _labels(fake_labels, "fake_labels", fake.shape[0], len(names))
    rows = []
    for c, name in enumerate(names):
        r, f = real[y_real == c], fake[y_fake == c]
        row: dict[str, Optional[object]] = {"name": name, "precision": None, "recall": None,
                                            "n_real": int(len(r)), "n_fake": int(len(f))}
        if min(len(r), len(f)) <= k:
            row["note"] = f"skipped: needs more than k = {k} real and generated samples"
        else:
            pr = precision_recall(r, f, k, device=device, block_bytes=block_bytes)
            row.update(precision=pr["precision"], recall=pr["recall"])
        rows.append(row)
    return rows
