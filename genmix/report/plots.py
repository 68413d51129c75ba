"""PNG figures for run reports: confusion matrix, reliability diagram, ROC curves, feature maps
(PCA / t-SNE of real vs synthetic vs mixed samples) and image grids.

Figures are drawn off-screen (Agg), so reports render on headless training machines, and
written atomically, so a killed run never leaves a truncated PNG behind. Each function returns
the path it wrote.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from genmix._atomic import atomic_path  # noqa: E402
from genmix.metrics.calibration import check_probs_labels, expected_calibration_error, reliability_bins  # noqa: E402
from genmix.metrics.classification import auc_ovr, roc_curve  # noqa: E402

KIND_MARKERS = {"real": "o", "synthetic": "^", "mixed": "s"}
_EXTRA_MARKERS = ("D", "v", "P", "X", "*", "<", ">")
DPI = 120


def _save(fig, path) -> Path:
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _check_names(class_names, k: int, what: str) -> list:
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
        raise TypeError("class_names must be a list of str")
    names = list(class_names)
    if len(names) != k:
        raise ValueError(f"class_names must have one name per {what} ({k}), got {len(names)}")
    return names


def _class_colors(k: int) -> list:
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(k)]


# ------------------------------------------------------------------------ confusion matrix

def plot_confusion_matrix(cm, class_names, path, *, normalize: bool = True, title=None) -> Path:
    """Heat map of a confusion matrix (rows = true class); normalize shows each row's shares.

    Row shares read directly as sensitivity on the diagonal, which is what matters for an
    imbalanced set; the raw counts are printed beside them.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise ValueError(f"cm must be a square 2-D matrix, got shape {cm.shape}")
    if not np.issubdtype(cm.dtype, np.number) or (cm < 0).any():
        raise ValueError("cm must hold non-negative counts")
    k = cm.shape[0]
    names = _check_names(class_names, k, "row of cm")
    counts = cm.astype(np.float64)
    if normalize:
        support = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    else:
        shown = counts

    size = max(4.0, 0.6 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(shown.max(), 1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    if k <= 20:  # beyond that the numbers are unreadable; the colours still are not
        threshold = 0.5 * (1.0 if normalize else max(shown.max(), 1.0))
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}\n({int(cm[i, j])})" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8 if k <= 10 else 6,
                        color="white" if shown[i, j] > threshold else "black")
    return _save(fig, path)


# --------------------------------------------------------------------- reliability diagram

def plot_reliability_diagram(probs, labels, path, n_bins: int = 15, *, title=None) -> Path:
    """Accuracy vs confidence per bin, with the gap to the diagonal shaded and the ECE in the
    title; a lower panel shows how many samples each bin holds (sparse bins are noisy)."""
    bins = reliability_bins(probs, labels, n_bins)
    count = bins["count"]
    used = count > 0
    ece = expected_calibration_error(probs, labels, n_bins)
    centers = (bins["lower"] + bins["upper"]) / 2
    width = bins["upper"] - bins["lower"]

    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    acc = np.where(used, bins["accuracy"], 0.0)
    conf = np.where(used, bins["confidence"], 0.0)
    ax.bar(centers[used], acc[used], width=width[used], color="tab:blue", edgecolor="black",
           linewidth=0.5, label="accuracy")
    ax.bar(centers[used], (conf - acc)[used], bottom=acc[used], width=width[used], color="tab:red",
           alpha=0.3, edgecolor="tab:red", hatch="//", linewidth=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or f"reliability diagram (ECE {ece:.3f}, {n_bins} bins)")
    ax_count.bar(centers, count, width=width, color="gray", edgecolor="black", linewidth=0.5)
    ax_count.set_xlabel("confidence (top-class probability)")
    ax_count.set_ylabel("samples")
    return _save(fig, path)


# ------------------------------------------------------------------------------ ROC curves

def plot_roc_curves(probs, labels, class_names, path, *, title=None) -> Path:
    """One-vs-rest ROC curve per class with its AUC; classes without both positives and
    negatives in labels have no curve and are listed as such in the legend."""
    p, y = check_probs_labels(probs, labels)
    names = _check_names(class_names, p.shape[1], "column of probs")
    colors = _class_colors(len(names))
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    for c, name in enumerate(names):
        positives = y == c
        if positives.all() or not positives.any():
            ax.plot([], [], color=colors[c], label=f"{name} (no ROC: one-sided labels)")
            continue
        fpr, tpr, _ = roc_curve(p[:, c], positives)
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties count 1/2
        ax.plot(fpr, tpr, color=colors[c], linewidth=1.5, label=f"{name} (AUC {auc:.3f})")
    macro = auc_ovr(p, y)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title or (f"ROC one-vs-rest (macro AUC {macro:.3f})" if np.isfinite(macro) else "ROC one-vs-rest"))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


# ---------------------------------------------------------------------- feature embeddings

def pca(x, n_components: int = 2) -> np.ndarray:
    """Projection of the centred rows of x on their top principal axes (signs made fixed)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    out = u[:, :n_components] * s[:n_components]
    # SVD signs are arbitrary; fix them so the same data always gives the same picture.
    flip = np.sign(out[np.argmax(np.abs(out), axis=0), np.arange(out.shape[1])])
    out = out * np.where(flip == 0, 1.0, flip)
    if out.shape[1] < n_components:  # fewer samples or dims than components: pad with zeros
        out = np.pad(out, ((0, 0), (0, n_components - out.shape[1])))
    return out


def _squared_distances(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, 0.0)


def _affinities(d2: np.ndarray, perplexity: float, steps: int = 64) -> np.ndarray:
    """Gaussian conditional affinities P(j|i), each row's bandwidth bisected to the perplexity."""
    n = d2.shape[0]
    off = ~np.eye(n, dtype=bool)
    d = d2 - np.where(off, d2, np.inf).min(axis=1, keepdims=True)  # shift: exp never underflows to 0 rows
    d[~off] = 0.0
    target = np.log(perplexity)
    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    for _ in range(steps):
        e = np.exp(-beta[:, None] * d) * off
        total = e.sum(axis=1)
        entropy = np.log(total) + beta * (d * e).sum(axis=1) / total
        too_flat = entropy > target  # bandwidth too wide: raise beta
        lo = np.where(too_flat, beta, lo)
        hi = np.where(too_flat, hi, beta)
        beta = np.where(too_flat, np.where(np.isinf(hi), beta * 2, (beta + hi) / 2),
                        np.where(np.isinf(lo), beta / 2, (beta + lo) / 2))
    e = np.exp(-beta[:, None] * d) * off
    return e / e.sum(axis=1, keepdims=True)


def tsne(x, perplexity: float = 30.0, n_iter: int = 500, seed: int = 0) -> np.ndarray:
    """Exact t-SNE (van der Maaten & Hinton, 2008) to 2-D, in numpy; O(N^2), fine for <= 2000.

    Standard recipe: PCA to 50 dims, perplexity-calibrated affinities, PCA initialisation
    (deterministic, so `seed` only breaks exact ties), early exaggeration 12 for the first
    quarter of the iterations, momentum 0.5 -> 0.8 and per-parameter adaptive gains.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"x must be 2-D with at least 3 rows, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x must be finite")
    if not perplexity > 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    n = x.shape[0]
    perplexity = min(float(perplexity), (n - 1) / 3.0)  # more neighbours than points is meaningless
    if x.shape[1] > 50:
        x = pca(x, 50)
    x = x / max(np.abs(x).max(), 1e-12)  # scale-free: bisection starts near the right bandwidth

    p = _affinities(_squared_distances(x), perplexity)
    p = np.maximum((p + p.T) / (2.0 * n), 1e-12)

    rng = np.random.default_rng(seed)
    y = pca(x, 2)
    y = (y / max(np.std(y[:, 0]), 1e-12) * 1e-4 + rng.normal(scale=1e-8, size=y.shape)).astype(np.float32)
    p = p.astype(np.float32)  # a picture needs no float64; float32 halves the O(N^2) traffic
    learning_rate = max(n / 12.0 / 4.0, 50.0)
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    exaggerate_until = n_iter // 4
    scaled_p = 12.0 * p
    for it in range(n_iter):
        if it == exaggerate_until:
            scaled_p = p
        momentum = 0.5 if it < exaggerate_until else 0.8
        # Student-t kernel 1 / (1 + |yi - yj|^2), built in place: this loop is the whole cost.
        num = np.subtract.outer(y[:, 0], y[:, 0])
        num *= num
        tmp = np.subtract.outer(y[:, 1], y[:, 1])
        tmp *= tmp
        num += tmp
        num += 1.0
        np.reciprocal(num, out=num)
        np.fill_diagonal(num, 0.0)
        w = np.multiply(num, -1.0 / num.sum(), out=tmp)  # -q
        w += scaled_p
        w *= num  # (p - q) * kernel
        grad = 4.0 * (w.sum(axis=1)[:, None] * y - w @ y)
        gains = np.where(np.sign(grad) != np.sign(update), gains + 0.2, gains * 0.8).clip(min=0.01)
        update = momentum * update - learning_rate * gains * grad
        y = (y + update).astype(np.float32)
    return (y - y.mean(axis=0)).astype(np.float64)


def plot_feature_map(features, kinds, labels, class_names, path, method: str = "pca", *, title=None,
                     seed: int = 0) -> Path:
    """2-D map of feature vectors: colour = class, marker = kind ("real", "synthetic", "mixed",
    ...). Shows whether synthetic samples cover the real class clusters or sit apart."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 3:
        raise ValueError(f"features must be 2-D (N, D) with N >= 3, got shape {f.shape}")
    n = f.shape[0]
    kinds = np.asarray(kinds, dtype=object)
    if kinds.shape != (n,) or not all(isinstance(k, str) for k in kinds):
        raise ValueError(f"kinds must be {n} strings, one per row of features")
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {n} integer class indices, one per row of features")
    names = list(class_names) if not isinstance(class_names, str) else None
    if names is None or not all(isinstance(c, str) for c in names):
        raise TypeError("class_names must be a list of str")
    if y.min() < 0 or y.max() >= len(names):
        raise ValueError(f"labels must be in [0, {len(names)})")
    if method == "pca":
        xy = pca(f, 2)
    elif method == "tsne":
        xy = tsne(f, seed=seed)
    else:
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")

    present = list(dict.fromkeys(kinds.tolist()))
    kind_list = [k for k in KIND_MARKERS if k in present] + [k for k in present if k not in KIND_MARKERS]
    extra = iter(_EXTRA_MARKERS * (len(kind_list) // len(_EXTRA_MARKERS) + 1))
    markers = {k: KIND_MARKERS.get(k) or next(extra) for k in kind_list}
    colors = _class_colors(len(names))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for kind in kind_list:
        for c in range(len(names)):
            sel = (kinds == kind) & (y == c)
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=14, marker=markers[kind], color=colors[c],
                           alpha=0.7, linewidths=0)
    class_handles = [plt.Line2D([], [], linestyle="", marker="o", color=colors[c], label=names[c])
                     for c in range(len(names)) if (y == c).any()]
    kind_handles = [plt.Line2D([], [], linestyle="", marker=markers[k], color="gray", label=k) for k in kind_list]
    first = ax.legend(handles=class_handles, title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.add_artist(first)
    ax.legend(handles=kind_handles, title="kind", loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"feature map ({'PCA' if method == 'pca' else 't-SNE'}, {n} samples)")
    return _save(fig, path)


# ------------------------------------------------------------------------------ image grid

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
