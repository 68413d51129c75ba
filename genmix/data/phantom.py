"""A procedural CT phantom of focal liver lesions: a built-in dataset that needs no download.

This is NOT patient data. Every image is drawn from the simple models below, so the demo and
the tests run anywhere, and the dataset is small, imbalanced and hard in the ways real
lesion data is: one rare class, a distribution shift between train and test, and small
lesions whose class can barely be seen.

Each 64x64 patch shows liver parenchyma in a soft-tissue window (portal-venous phase) with
one lesion:

* cyst: water-dark, homogeneous, with a sharp round to oval border.
* hemangioma: a darker core with peripheral nodular enhancement, i.e. a few bright,
  vessel-like nodules along the inside of the rim. Their number grows with the lesion, so a
  small hemangioma shows few or none and looks like the other two classes.
* metastasis: hypodense, heterogeneous, with an indistinct irregular border (radius modulated
  by angular harmonics, then a soft edge); about 40% show a brighter rim (target sign), and
  about a fifth are cystic: darker, more uniform and better defined, like a cyst.

The parenchyma is textured (low-frequency mottling plus fine grain) and crossed by bright
vessels, which near a lesion resemble a hemangioma's nodules. Per patch the acquisition
varies: blur, noise level, and a global shift and scaling of intensity. Lesion size (radius
about 3 to 20 px) and position vary independently of class. Intensities are modelled in
Hounsfield units and windowed to uint8 at the end.

Difficulty: trained without augmentation, a small CNN reaches roughly 75-82% test accuracy
and a ResNet-18 about 70%, both missing most hemangiomas. Val and test hold far more
metastases than train, as a new site's case mix would.
"""

from __future__ import annotations

import numpy as np

from .dataset import MedicalDataset, Split

CLASS_NAMES = ["cyst", "hemangioma", "metastasis"]
SPLIT_COUNTS = {  # images per class, in CLASS_NAMES order
    "train": (433, 70, 178),
    "val": (115, 30, 157),
    "test": (128, 30, 149),
}

# Display window (HU): soft tissue, centred on enhanced liver.
WINDOW_LEVEL = 70.0
WINDOW_WIDTH = 350.0

# Lengths below are in pixels of a 64x64 patch and scale with the resolution.
REFERENCE_RESOLUTION = 64
PAD = 8                           # margin rendered around the patch so blurring does not wrap

# Parenchyma.
LIVER_HU = (95.0, 125.0)          # enhanced liver
MOTTLE_HU = (3.0, 8.0)            # std of low-frequency texture
MOTTLE_SCALE = 5.0                # its correlation length
GRAIN_HU = (2.0, 5.0)             # std of fine grain
GRAIN_SCALE = 0.8
VESSELS_MEAN = 1.2                # Poisson mean of vessel segments per patch (at most MAX_VESSELS)
MAX_VESSELS = 3
VESSEL_HU = (30.0, 70.0)          # brightness above liver
VESSEL_WIDTH = (0.7, 1.8)         # Gaussian profile sigma
VESSEL_LENGTH = (8.0, 40.0)

# Lesion geometry, shared by all classes so that size and place are no cue.
RADIUS = (3.0, 20.0)              # log-uniform semi-major axis
ASPECT = (0.7, 1.0)               # minor/major axis ratio
CENTER_JITTER = 8.0               # uniform offset of the centre from the patch centre

# Cyst.
CYST_HU = (0.0, 25.0)             # water
CYST_EDGE = 0.35                  # sigmoid width of the border: sharp

# Hemangioma.
HEMANGIOMA_CORE_DROP = (30.0, 70.0)  # core is this much darker than liver
HEMANGIOMA_EDGE = 0.7
SPOTS_PER_PIXEL_RADIUS = 1 / 3.0  # Poisson mean of rim nodules = radius / 3 (at most MAX_SPOTS)
MAX_SPOTS = 7
SPOT_HU = (40.0, 90.0)            # nodule brightness above liver, like the vessels
SPOT_POSITION = (0.72, 0.95)      # nodule centre as a fraction of the radius
SPOT_SIZE = (0.10, 0.18)          # nodule sigma as a fraction of the radius
SPOT_MIN_SIZE = 0.6

# Metastasis.
METASTASIS_DROP = (30.0, 90.0)    # interior is this much darker than liver
METASTASIS_EDGE = (1.0, 3.0)      # soft, indistinct border
HARMONICS = (2, 3, 4, 5)          # angular modulation of the radius
HARMONIC_AMPLITUDE = 0.12         # at most, divided by sqrt(order)
HETEROGENEITY_HU = (5.0, 15.0)    # std of interior mottling
HETEROGENEITY_SCALE = 1.5         # its correlation length
NECROSIS_HU = (0.0, 20.0)         # extra darkening towards the centre
CYSTIC_METASTASIS_RATE = 0.2     # necrotic/cystic metastases, the cyst look-alikes
CYSTIC_METASTASIS_DROP = (50.0, 95.0)
CYSTIC_METASTASIS_EDGE = (0.5, 1.2)
CYSTIC_METASTASIS_HETEROGENEITY = 0.3  # factor on HETEROGENEITY_HU
TARGET_SIGN_RATE = 0.4
TARGET_RIM_HU = (10.0, 40.0)      # rim brightness above liver
TARGET_RIM_WIDTH = 0.15           # fraction of the radius

# Acquisition.
BLUR = (0.5, 1.3)                 # Gaussian sigma
NOISE_HU = (6.0, 20.0)            # white noise std
SHIFT_HU = (-15.0, 15.0)          # global intensity shift
CONTRAST = (0.85, 1.15)           # global scaling about the window level


def make_phantom(seed: int = 0, resolution: int = 64, *, return_meta: bool = False):
    """The phantom dataset: train/val/test with the class counts of SPLIT_COUNTS.

    The same seed gives byte-identical images. With `return_meta` also returns, per split, the
    lesion geometry and features, which let tests check that each class looks as described:
    "center" (N, 2) as (row, col) pixels, "radius" (semi-major axis, px), "aspect" (minor over
    major axis), "angle" (of the major axis, from the column axis towards rows, radians),
    "rim_spots" (hemangioma nodules), "target_sign" and "cystic" (metastasis variants).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise TypeError(f"resolution must be an int, got {type(resolution).__name__}")
    if resolution < 16:
        raise ValueError(f"resolution must be at least 16, got {resolution}")
    rng = np.random.default_rng(seed)
    labels = {}
    for name, counts in SPLIT_COUNTS.items():
        order = np.repeat(np.arange(len(CLASS_NAMES)), counts)
        labels[name] = order[rng.permutation(len(order))]
    all_labels = np.concatenate(list(labels.values()))
    hu, meta = _render(all_labels, int(resolution), rng)
    images = _window(hu)

    splits, split_meta, start = {}, {}, 0
    for name, split_labels in labels.items():
        stop = start + len(split_labels)
        splits[name] = Split(images[start:stop, :, :, None], split_labels.astype(np.int64))
        split_meta[name] = {key: value[start:stop] for key, value in meta.items()}
        start = stop
    name = "phantom" if seed == 0 else f"phantom:{seed}"
    dataset = MedicalDataset(name, list(CLASS_NAMES), splits, notes=["procedural phantom, not patient data"])
    return (dataset, split_meta) if return_meta else dataset


def _render(labels: np.ndarray, resolution: int, rng) -> tuple:
    """Images in HU, (N, resolution, resolution) float32, and the lesion metadata."""
    scale = resolution / REFERENCE_RESOLUTION
    pad = int(np.ceil(PAD * scale))
    size = resolution + 2 * pad
    liver = _uniform(rng, LIVER_HU, len(labels))
    canvas = _parenchyma(liver, size, scale, rng)
    lesion, mask, meta = _lesions(labels, liver, size, scale, rng)
    hu = _acquire(canvas * (1 - mask) + lesion * mask, scale, rng)
    meta["center"] = meta["center"] - pad
    return hu[:, pad:pad + resolution, pad:pad + resolution], meta


def _lesions(labels: np.ndarray, liver, size: int, scale: float, rng) -> tuple:
    """Per image the lesion's intensity (HU), its soft mask, and its geometry and features."""
    n = len(labels)
    radius = np.exp(_uniform(rng, np.log(RADIUS), n)) * scale
    aspect = _uniform(rng, ASPECT, n)
    angle = _uniform(rng, (0, np.pi), n)
    center = size / 2 - 0.5 + _uniform(rng, (-CENTER_JITTER, CENTER_JITTER), (n, 2)) * scale
    u, v = _lesion_frame(center, angle, size)
    v = v / aspect[:, None, None]                      # now the outline is the circle of `radius`
    dist = np.sqrt(u * u + v * v)

    interior = np.empty_like(dist)
    boundary = np.ones_like(dist) * radius[:, None, None]
    edge = np.empty(n, dtype=np.float32)
    spots = np.zeros(n, dtype=np.int64)
    target = np.zeros(n, dtype=bool)
    cystic = np.zeros(n, dtype=bool)

    cyst = np.flatnonzero(labels == 0)
    interior[cyst] = _uniform(rng, CYST_HU, len(cyst))[:, None, None]
    edge[cyst] = CYST_EDGE * scale

    hem = np.flatnonzero(labels == 1)
    edge[hem] = HEMANGIOMA_EDGE * scale
    spots[hem] = np.minimum(rng.poisson(radius[hem] / scale * SPOTS_PER_PIXEL_RADIUS), MAX_SPOTS)
    interior[hem] = _hemangioma(liver[hem], radius[hem], spots[hem], u[hem], v[hem], scale, rng)

    met = np.flatnonzero(labels == 2)
    cystic[met] = rng.random(len(met)) < CYSTIC_METASTASIS_RATE
    soft, firm = _uniform(rng, METASTASIS_EDGE, len(met)), _uniform(rng, CYSTIC_METASTASIS_EDGE, len(met))
    edge[met] = np.where(cystic[met], firm, soft) * scale
    boundary[met] *= _harmonics(np.arctan2(v[met], u[met]), rng)
    target[met] = rng.random(len(met)) < TARGET_SIGN_RATE
    rho = dist[met] / boundary[met]
    interior[met] = _metastasis(liver[met], rho, cystic[met], target[met], size, scale, rng)

    mask = _sigmoid((boundary - dist) / edge[:, None, None])
    meta = {"center": center, "radius": radius, "aspect": aspect, "angle": angle,
            "rim_spots": spots, "target_sign": target, "cystic": cystic}
    return interior, mask, meta


def _acquire(hu: np.ndarray, scale: float, rng) -> np.ndarray:
    """The scanner's part: blur, a global shift and scaling of intensity, and noise."""
    n = len(hu)
    hu = _blur(hu, _uniform(rng, BLUR, n) * scale)
    contrast = _uniform(rng, CONTRAST, n)[:, None, None]
    shift = _uniform(rng, SHIFT_HU, n)[:, None, None]
    noise = _uniform(rng, NOISE_HU, n)[:, None, None]
    hu = (hu - WINDOW_LEVEL) * contrast + WINDOW_LEVEL + shift
    return hu + noise * rng.standard_normal(hu.shape, dtype=np.float32)


def _parenchyma(liver, size: int, scale: float, rng) -> np.ndarray:
    """Liver: mean level, low-frequency mottling, fine grain, and a few bright vessels."""
    n = len(liver)
    mottle = _smooth_noise(n, size, MOTTLE_SCALE * scale, rng) * _uniform(rng, MOTTLE_HU, n)[:, None, None]
    grain = _smooth_noise(n, size, GRAIN_SCALE * scale, rng) * _uniform(rng, GRAIN_HU, n)[:, None, None]
    canvas = (liver[:, None, None] + mottle + grain).astype(np.float32)
    count = np.minimum(rng.poisson(VESSELS_MEAN, n), MAX_VESSELS)
    grid = np.arange(size, dtype=np.float32)
    for k in range(MAX_VESSELS):
        mid = rng.uniform(0, size, (n, 2)).astype(np.float32)
        direction = rng.uniform(0, np.pi, n)
        half = _uniform(rng, VESSEL_LENGTH, n) * scale / 2
        width = _uniform(rng, VESSEL_WIDTH, n) * scale
        bright = _uniform(rng, VESSEL_HU, n)
        drawn = np.flatnonzero(count > k)
        dy = grid[None, :, None] - mid[drawn, 0, None, None]
        dx = grid[None, None, :] - mid[drawn, 1, None, None]
        cos = np.cos(direction[drawn]).astype(np.float32)[:, None, None]
        sin = np.sin(direction[drawn]).astype(np.float32)[:, None, None]
        limit = half[drawn, None, None]
        along = np.minimum(np.maximum(dx * cos + dy * sin, -limit), limit)
        off_y, off_x = dy - along * sin, dx - along * cos  # offset from the nearest point on the segment
        profile = np.exp(-(off_y ** 2 + off_x ** 2) / (2 * width[drawn, None, None] ** 2))
        canvas[drawn] += bright[drawn, None, None] * profile
    return canvas


def _hemangioma(liver, radius, spots, u, v, scale: float, rng) -> np.ndarray:
    """Dark core plus up to MAX_SPOTS bright nodules just inside the rim."""
    n = len(liver)
    core = (liver - _uniform(rng, HEMANGIOMA_CORE_DROP, n))[:, None, None]
    nodules = np.zeros(u.shape, dtype=np.float32)
    for k in range(MAX_SPOTS):
        phi = rng.uniform(0, 2 * np.pi, n)
        at = _uniform(rng, SPOT_POSITION, n) * radius
        sigma = np.maximum(_uniform(rng, SPOT_SIZE, n) * radius, SPOT_MIN_SIZE * scale)
        drawn = np.flatnonzero(spots > k)
        cu = (at * np.cos(phi)).astype(np.float32)[drawn, None, None]
        cv = (at * np.sin(phi)).astype(np.float32)[drawn, None, None]
        spread = (2 * sigma ** 2).astype(np.float32)[drawn, None, None]
        blob = np.exp(-((u[drawn] - cu) ** 2 + (v[drawn] - cv) ** 2) / spread)
        nodules[drawn] = np.maximum(nodules[drawn], blob)
    peak = (liver + _uniform(rng, SPOT_HU, n))[:, None, None]
    return (core + (peak - core) * nodules).astype(np.float32)


def _metastasis(liver, rho, cystic, target, size: int, scale: float, rng) -> np.ndarray:
    """Hypodense, mottled interior, darker towards a necrotic centre; optionally a bright rim.

    Cystic metastases are darker and more uniform, which makes them look like cysts.
    """
    n = len(liver)
    drop = np.where(cystic, _uniform(rng, CYSTIC_METASTASIS_DROP, n), _uniform(rng, METASTASIS_DROP, n))
    base = (liver - drop)[:, None, None]
    spread = _uniform(rng, HETEROGENEITY_HU, n) * np.where(cystic, CYSTIC_METASTASIS_HETEROGENEITY, 1)
    mottle = _smooth_noise(n, size, HETEROGENEITY_SCALE * scale, rng) * spread.astype(np.float32)[:, None, None]
    necrosis = _uniform(rng, NECROSIS_HU, n)[:, None, None] * np.clip(1 - rho, 0, 1)
    rim_level = (liver + _uniform(rng, TARGET_RIM_HU, n))[:, None, None]
    rim = np.exp(-((rho - 0.9) ** 2) / (2 * TARGET_RIM_WIDTH ** 2)) * target[:, None, None]
    interior = base + mottle - necrosis
    return (interior + (rim_level - interior) * rim).astype(np.float32)


def _harmonics(theta, rng) -> np.ndarray:
    """Radius factor 1 + sum_k a_k cos(k theta + phase_k): an irregular, lobulated outline."""
    n = len(theta)
    factor = np.ones(theta.shape, dtype=np.float32)
    for order in HARMONICS:
        amplitude = _uniform(rng, (0, HARMONIC_AMPLITUDE / np.sqrt(order)), n)[:, None, None]
        phase = _uniform(rng, (0, 2 * np.pi), n)[:, None, None]
        factor = factor + amplitude * np.cos(order * theta + phase)
    return factor


def _lesion_frame(center, angle, size: int) -> tuple:
    """Pixel coordinates relative to each lesion centre, rotated so its major axis is u."""
    grid = np.arange(size, dtype=np.float32)
    dy = grid[None, :, None] - center[:, 0, None, None].astype(np.float32)
    dx = grid[None, None, :] - center[:, 1, None, None].astype(np.float32)
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _smooth_noise(n: int, size: int, sigma: float, rng) -> np.ndarray:
    """White noise low-passed with a Gaussian of `sigma` px, rescaled to unit std per image."""
    noise = _blur(rng.standard_normal((n, size, size), dtype=np.float32), np.full(n, sigma))
    noise -= noise.mean(axis=(1, 2), keepdims=True)
    return noise / noise.std(axis=(1, 2), keepdims=True)


def _blur(images: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian blur with a per-image sigma, in one FFT pass (periodic: callers pad)."""
    size = images.shape[-1]
    fy = np.fft.fftfreq(size).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    sigma = np.asarray(sigma, dtype=np.float32)[:, None, None]
    transfer = np.exp(-2 * np.pi ** 2 * sigma ** 2 * (fy ** 2 + fx ** 2))
    return np.fft.irfft2(np.fft.rfft2(images) * transfer, s=images.shape[-2:]).astype(np.float32)


def _uniform(rng, bounds, n) -> np.ndarray:
    """Per-image draws in float32, so that image arithmetic never promotes to float64."""
    return rng.uniform(bounds[0], bounds[1], n).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def _window(hu: np.ndarray) -> np.ndarray:
    low = WINDOW_LEVEL - WINDOW_WIDTH / 2
    return np.rint(np.clip((hu - low) * (255.0 / WINDOW_WIDTH), 0, 255)).astype(np.uint8)
