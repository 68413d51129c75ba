"""genmix.report.plots: every figure is a real PNG, t-SNE keeps clusters apart, grids are sized."""

import numpy as np
import pytest
from PIL import Image

from genmix.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["normal", "benign", "malignant"]


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left


def classifier_output(n=120, k=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[labels]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), labels


def test_plot_confusion_matrix(tmp_path):
    cm = np.array([[3, 1, 0], [1, 2, 0], [0, 0, 0]])  # an empty row must not divide by zero
    for normalize in (True, False):
        path = plots.plot_confusion_matrix(cm, NAMES, tmp_path / f"cm_{normalize}.png", normalize=normalize)
        assert_png(path)
    with pytest.raises(ValueError, match="class_names"):
        plots.plot_confusion_matrix(cm, NAMES[:2], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="cm"):
        plots.plot_confusion_matrix(np.ones((2, 3)), NAMES, tmp_path / "bad.png")


def test_plot_reliability_diagram(tmp_path):
    probs, labels = classifier_output()
    assert_png(plots.plot_reliability_diagram(probs, labels, tmp_path / "rel.png", n_bins=10))


def test_plot_roc_curves(tmp_path):
    probs, labels = classifier_output()
    assert_png(plots.plot_roc_curves(probs, labels, NAMES, tmp_path / "roc.png"))
    labels[labels == 2] = 0  # a class with no positives gets no curve but does not fail
    assert_png(plots.plot_roc_curves(probs, labels, NAMES, tmp_path / "roc_missing.png"))


def two_clusters(n_per=60, d=20, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(n_per, d)), rng.normal(size=(n_per, d)) + 6.0])
    return x, np.repeat([0, 1], n_per)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_plot_feature_map(tmp_path, method):
    x, labels = two_clusters()
    kinds = np.array(["real", "synthetic", "mixed"])[np.arange(x.shape[0]) % 3]
    path = plots.plot_feature_map(x, kinds, labels, NAMES[:2], tmp_path / f"map_{method}.png", method=method)
    assert_png(path)
    with pytest.raises(ValueError, match="method"):
        plots.plot_feature_map(x, kinds, labels, NAMES[:2], tmp_path / "bad.png", method="umap")
    with pytest.raises(ValueError, match="kinds"):
        plots.plot_feature_map(x, kinds[:-1], labels, NAMES[:2], tmp_path / "bad.png")


def test_tsne_separates_clusters():
    x, labels = two_clusters(n_per=100, d=30, seed=1)
    y = plots.tsne(x)
    assert y.shape == (200, 2) and np.isfinite(y).all()
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn_accuracy = (labels[d.argmin(axis=1)] == labels).mean()
    assert nn_accuracy > 0.95
    assert np.array_equal(y, plots.tsne(x))  # deterministic


def test_pca_is_deterministic_projection():
    x, _ = two_clusters()
    xy = plots.pca(x)
    assert xy.shape == (x.shape[0], 2)
    assert np.var(xy[:, 0]) >= np.var(xy[:, 1])
    assert np.array_equal(xy, plots.pca(x.copy()))


def test_pca_matches_sklearn_and_the_covariance_eigenvectors():
    from sklearn.decomposition import PCA

    x, _ = two_clusters(d=8, seed=3)
    xy = plots.pca(x, 3)
    assert np.allclose(xy, PCA(n_components=3, svd_solver="full").fit_transform(x))
    # independent check: the top eigenvectors of the covariance, up to sign
    centred = x - x.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov(centred, rowvar=False))
    top = evecs[:, ::-1][:, :3]
    assert np.allclose(np.abs(xy), np.abs(centred @ top), atol=1e-8)
    assert np.allclose(xy.var(axis=0, ddof=1), evals[::-1][:3])


def test_pca_pads_missing_components_and_checks_arguments():
    x = np.random.default_rng(0).normal(size=(5, 2))
    xy = plots.pca(x, 4)
    assert xy.shape == (5, 4) and (xy[:, 2:] == 0).all()
    with pytest.raises(ValueError, match="n_components"):
        plots.pca(x, 0)
    with pytest.raises(ValueError, match="x must be 2-D"):
        plots.pca(np.zeros(4))


def test_tsne_arguments_and_few_points():
    x, _ = two_clusters(n_per=5, d=4)
    y = plots.tsne(x, perplexity=30.0, seed=1)  # perplexity capped at (10 - 1) / 3
    assert y.shape == (10, 2) and np.isfinite(y).all()
    assert np.allclose(y.mean(axis=0), 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="n_iter must be an int >= 250"):
        plots.tsne(x, n_iter=100)
    with pytest.raises(ValueError, match="perplexity"):
        plots.tsne(x, perplexity=0.0)
    with pytest.raises(ValueError, match="at least 3 rows"):
        plots.tsne(x[:2])


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_save_image_grid_size(tmp_path, channels):
    rng = np.random.default_rng(0)
    shape = (7, 10, 12) if channels is None else (7, 10, 12, channels)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    path = plots.save_image_grid(images, tmp_path / "grid.png", nrow=3)
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        # 3 columns x 3 rows of 10 x 12 images with 2-px borders: 3 * 14 + 2 wide, 3 * 12 + 2 high
        assert im.size == (44, 38)
        assert im.mode == ("RGB" if channels == 3 else "L")
        grid = np.asarray(im)
    first = images[0] if channels != 1 else images[0, ..., 0]
    assert np.array_equal(grid[2:12, 2:14], first)
    assert (grid[:2] == 0).all() and (grid[:, :2] == 0).all()  # border
    last_cell = grid[26:36, 2:14]  # image 6 opens the third row
    assert np.array_equal(last_cell, images[6] if channels != 1 else images[6, ..., 0])
    assert (grid[26:36, 16:] == 0).all()  # the rest of the last row stays padding


def test_save_image_grid_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        plots.save_image_grid(np.zeros((2, 4, 4), dtype=np.float32), tmp_path / "g.png", nrow=2)
    with pytest.raises(ValueError, match="nrow"):
        plots.save_image_grid(np.zeros((2, 4, 4), dtype=np.uint8), tmp_path / "g.png", nrow=0)
    with pytest.raises(ValueError, match="images"):
        plots.save_image_grid(np.zeros((2, 4, 4, 2), dtype=np.uint8), tmp_path / "g.png", nrow=2)
