"""Calibration: does a predicted confidence of 0.8 mean right 80% of the time?

Medical classifiers are read as risk scores, so an over-confident model is a real failure mode
even at equal accuracy; mixup-style training is often chosen precisely to improve this.
"""

from __future__ import annotations

import numpy as np

from genmix.metrics.confusion import as_class_indices

EPS = 1e-12
_SUM_TOL = 1e-3  # rows of float32 softmax outputs sum to 1 only up to rounding


def check_probs_labels(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 (N, K) probabilities and int64 (N,) labels.

    Rows must be probability vectors: logits passed by mistake would otherwise give plausible
    looking but meaningless ECE and NLL.
    """
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, K), got shape {p.shape}")
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise TypeError(f"probs must be numeric, got dtype {p.dtype}")
    p = p.astype(np.float64)
    n, k = p.shape
    if n == 0 or k < 2:
        raise ValueError(f"probs needs at least one row and two classes, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("probs must be finite")
    if p.min() < -_SUM_TOL or p.max() > 1 + _SUM_TOL:
        raise ValueError("probs must lie in [0, 1] (pass softmax outputs, not logits)")
    if np.abs(p.sum(axis=1) - 1).max() > _SUM_TOL:
        raise ValueError("each row of probs must sum to 1 (pass softmax outputs, not logits)")
    y = as_class_indices(labels, "labels", k)
    if y.size != n:
        raise ValueError(f"labels must have one entry per row of probs ({n}), got {y.size}")
    return np.clip(p, 0.0, 1.0), y


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
        raise TypeError(f"n_bins must be an int, got {type(n_bins).__name__}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return int(n_bins)


def reliability_bins(probs, labels, n_bins: int = 15) -> dict:
    """Per-bin mean confidence, accuracy and count for a reliability diagram.

    Bins are equal-width on the top-class confidence, each (lower, upper] so a confidence of
    exactly 1 lands in the last bin. Empty bins have NaN confidence and accuracy.
    """
    p, y = check_probs_labels(probs, labels)
    n_bins = _check_n_bins(n_bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") puts a value equal to an edge in the bin that edge closes.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, conf_sum / count, np.nan)
        accuracy = np.where(count > 0, acc_sum / count, np.nan)
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "confidence": confidence,
        "accuracy": accuracy,
        "count": count.astype(np.int64),
    }


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """Sum over bins of (bin share of samples) * |accuracy - confidence| (Guo et al., 2017)."""
    bins = reliability_bins(probs, labels, n_bins)
    count = bins["count"]
    used = count > 0
    gaps = np.abs(bins["accuracy"][used] - bins["confidence"][used])
    return float(np.sum(count[used] / count.sum() * gaps))


def negative_log_likelihood(probs, labels, eps: float = EPS) -> float:
    """Mean -log p(true class); probabilities are clipped at eps so one zero cannot make it inf."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    p, y = check_probs_labels(probs, labels)
    picked = p[np.arange(y.size), y]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))
