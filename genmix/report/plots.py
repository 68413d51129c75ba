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

from genmix._atomic import atomic_path  # noqa: E402
from genmix.data.grid import save_image_grid  # noqa: E402,F401  (re-exported: part of this module's API)
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
    from sklearn.metrics import auc as sk_auc

    colors = _class_colors(len(names))
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    for c, name in enumerate(names):
        positives = y == c
        if positives.all() or not positives.any():
            ax.plot([], [], color=colors[c], label=f"{name} (no ROC: one-sided labels)")
            continue
        fpr, tpr, _ = roc_curve(p[:, c], positives)
        auc = float(sk_auc(fpr, tpr))  # trapezoids under the curve: a tie counts one half
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
    """Projection of the rows of x on their top principal axes: sklearn.decomposition.PCA.

    Exact SVD (svd_solver="full"), whose signs sklearn fixes, so the same data always gives the
    same picture. With fewer samples or dimensions than components, the missing columns are 0.
    """
    from sklearn.decomposition import PCA  # imported on use: sklearn takes a second to import

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be 2-D (N, D) with N >= 1, got shape {x.shape}")
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"n_components must be a positive int, got {n_components!r}")
    k = min(int(n_components), *x.shape)
    out = PCA(n_components=k, svd_solver="full").fit_transform(x)
    if k < n_components:
        out = np.pad(out, ((0, 0), (0, n_components - k)))
    return out


def _tsne_iterations_name() -> str:
    """sklearn renamed TSNE's n_iter to max_iter (1.5, old name removed in 1.7)."""
    import inspect

    from sklearn.manifold import TSNE

    return "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"


TSNE_MIN_ITER = 250  # sklearn's TSNE runs 250 early-exaggeration iterations before anything else


def tsne(x, perplexity: float = 30.0, n_iter: int = 500, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of the rows of x: sklearn.manifold.TSNE (Barnes-Hut), PCA-initialised.

    Rows are first reduced to 50 dimensions by PCA when they have more (the usual recipe, and
    it keeps the neighbour search cheap). `perplexity` is capped at (N - 1) / 3, as more
    neighbours than points is meaningless; `n_iter` (>= 250) is sklearn's max_iter (n_iter in
    sklearn before 1.5); `seed` is its random_state, so a call is reproducible. The result is centred.

    It runs on one thread: on the shared 2-core VM, sklearn's OpenMP threads (beside torch's
    own OpenMP runtime) made a 200-point map take 5-50 s instead of about 1 s single-threaded,
    and 2000 points took 49 s on two threads against 21 s on one.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"x must be 2-D with at least 3 rows, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x must be finite")
    if not perplexity > 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < TSNE_MIN_ITER:
        raise ValueError(f"n_iter must be an int >= {TSNE_MIN_ITER}, got {n_iter!r}")
    n = x.shape[0]
    perplexity = min(float(perplexity), (n - 1) / 3.0)
    if x.shape[1] > 50:
        x = pca(x, 50)
    model = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                 random_state=int(seed), **{_tsne_iterations_name(): int(n_iter)})
    with threadpool_limits(limits=1):
        y = model.fit_transform(x).astype(np.float64)
    return y - y.mean(axis=0)


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


def plot_learning_curve(rows: dict, strategies, fractions, keys, titles, path) -> Path:
    """One panel per metric: the mean over seeds (± std as a band) against the training share."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key, title in zip(axes[0], keys, titles):
        for strategy in strategies:
            points = [(f, rows.get((strategy, key), {}).get(f)) for f in fractions]
            points = [(f, st["mean"], st["std"]) for f, st in points if st]
            if not points:
                continue
            xs, means, stds = (np.array(v, dtype=np.float64) for v in zip(*points))
            ax.plot(xs, means, marker="o", label=strategy)
            ax.fill_between(xs, means - stds, means + stds, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("share of the training set")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def plot_ratio_sweep(points: dict, path, *, ylabel: str = "Δ macro-F1 vs none", control: str = "oversample") -> Path:
    """Paired differences against `none` at each synthetic ratio: one line per strategy, the mean
    with its 95% interval as an error bar (a point without an interval has none), the control
    dashed. points: {strategy: [(ratio, mean, ci or None), ...]}; strategies are drawn a little
    apart along x so that their bars do not hide each other."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    names = list(points)
    width = 0.0
    ratios = sorted({r for rows in points.values() for r, _, _ in rows})
    if len(ratios) > 1:
        width = 0.25 * min(b - a for a, b in zip(ratios, ratios[1:])) / max(len(names), 1)
    for i, name in enumerate(names):
        rows = sorted((r, m, ci) for r, m, ci in points[name] if m is not None)
        if not rows:
            continue
        xs = np.array([r for r, _, _ in rows], dtype=np.float64) + (i - (len(names) - 1) / 2) * width
        means = np.array([m for _, m, _ in rows], dtype=np.float64)
        lo = np.array([m - ci[0] if ci else 0.0 for _, m, ci in rows])
        hi = np.array([ci[1] - m if ci else 0.0 for _, m, ci in rows])
        style = dict(linestyle="--", color="0.45") if name == control else {}
        ax.errorbar(xs, means, yerr=np.vstack([lo, hi]), marker="o", capsize=3, label=name, **style)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(ratios)
    ax.set_xlabel("synthetic ratio (appended images per real training image)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
