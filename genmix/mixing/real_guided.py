"""Real-guided diffusion strategies: "edit" and "diffmix", synthetic images that start from real ones.

Plain synthesis ("synth") draws an image from a label alone. These start from a real training
image instead, noise it to level s and let the diffusion model denoise it (SDEdit on the EDM
sampler, `genmix.models.diffusion.edm_edit`):

- "edit": denoised with the image's own label. A variation of a real image: its coarse layout
  stays, detail is redrawn. s = 0 is the image itself (the `oversample` control), s = 1 plain
  label-conditioned sampling (`synth`); edit sits between the two.
- "diffmix" (after Diff-Mix, Wang et al., CVPR 2024): denoised with another class's label, so the
  image moves towards that class; its label is y = (1 - s^gamma) y_src + s^gamma y_tgt. Targets
  are class-balanced: each class is the target equally often and never the source image's own
  class, so rare classes are targets as often as common ones.

s is the position on the sampler's noise schedule (`edm_strength_sigma`): s = 0.5 is sigma 2.5
for the default schedule, five times the data's standard deviation.

Both are offline synthetic sets (`genmix synthesize --from-real edit|diffmix`, in the same npz
layout as every synthetic set, with soft labels), appended to the training set like "synth"; so
their BatchMixer, like synth's, is the identity. Being ordinary synthetic sets they also load into
a `SyntheticPool` for the pooled strategies ("genmix", "gemix" blend real images with them).

Defaults, chosen from what the strength means, not tuned on any result:

- EDIT_STRENGTH = 0.5: half the sampler's path is re-run, from sigma 2.5: averaged over a 5x5
  patch that noise falls to the data's own spread, so structure coarser than that still shows
  through and finer detail is redrawn. Much lower and the variations are near copies (at
  s = 0.25, sigma is 0.17: grain-level changes, close to `oversample`); much higher and the
  image is forgotten (close to `synth`). 0.5 is the midpoint between the two controls the
  strategy must beat.
- DIFFMIX_STRENGTH = 0.5: the same noise level; fine, class-specific texture is redrawn under
  the target's label while the source's coarse layout holds, and the label is then half
  source, half target at gamma 1.
- DIFFMIX_GAMMA = 1.0: the label's target weight equals s, the share of the sampler's path run
  under the target label. gamma < 1 would claim that the image reaches the target class faster
  than that, gamma > 1 slower; neither is known for a given model, so the linear rule is used.
"""

from __future__ import annotations

import math
import numbers
from typing import Union

import numpy as np

from genmix.errors import UsageError
from genmix.mixing.synthetic import SyntheticMixer

__all__ = ["DIFFMIX_GAMMA", "DIFFMIX_STRENGTH", "DiffMixMixer", "EDIT_STRENGTH", "EditMixer", "REAL_GUIDED_MODES",
           "check_gamma", "check_strength", "diffmix_labels", "real_guided_plan"]

REAL_GUIDED_MODES = ("edit", "diffmix")
EDIT_STRENGTH = 0.5
DIFFMIX_STRENGTH = 0.5
DIFFMIX_GAMMA = 1.0


class EditMixer(SyntheticMixer):
    """Strategy "edit": batches pass through unchanged; the edited real images (a set written by
    `genmix synthesize --from-real edit`) were appended to the data set by `append_synthetic`."""

    name = "edit"


class DiffMixMixer(SyntheticMixer):
    """Strategy "diffmix": batches pass through unchanged; the images translated towards other
    classes (`genmix synthesize --from-real diffmix`), with their soft labels, were appended to
    the data set by `append_synthetic`."""

    name = "diffmix"


def check_strength(value, name: str = "strength") -> float:
    """A strength s: a finite number in [0, 1] (UsageError, a ValueError, naming `name`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not 0 <= float(value) <= 1:
        raise UsageError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_gamma(value, name: str = "gamma") -> float:
    """A label exponent gamma: a finite number > 0 (UsageError, a ValueError, naming `name`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not float(value) > 0:
        raise UsageError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def diffmix_labels(source, target, num_classes: int, strength: float, gamma: float) -> np.ndarray:
    """float32 (N, K) soft labels (1 - s^gamma) e_source + s^gamma e_target.

    source, target: int class indices (N,); strength s in [0, 1]; gamma > 0. Where source equals
    target the row is that class's one-hot row.
    """
    strength = check_strength(strength)
    gamma = check_gamma(gamma)
    source, target = np.asarray(source, dtype=np.int64).reshape(-1), np.asarray(target, dtype=np.int64).reshape(-1)
    if source.shape != target.shape:
        raise ValueError(f"source and target must have the same length, got {len(source)} and {len(target)}")
    for name, arr in (("source", source), ("target", target)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} classes must lie in [0, {num_classes})")
    w = strength ** gamma
    eye = np.eye(num_classes, dtype=np.float64)
    return ((1 - w) * eye[source] + w * eye[target]).astype(np.float32)


class _Cycler:
    """Members of each class in a seeded random order, each used once before any is reused."""

    def __init__(self, labels: np.ndarray, rng: np.random.Generator):
        self.labels, self.rng = labels, rng
        self.members = {}
        self.queue = {}

    def take(self, c: int, k: int) -> np.ndarray:
        members = self.members.setdefault(c, np.flatnonzero(self.labels == c))
        if len(members) == 0:
            raise ValueError(f"labels: class {c} has no real training images to start from")
        queue = self.queue.get(c, np.zeros(0, np.int64))
        while len(queue) < k:
            queue = np.concatenate([queue, members[self.rng.permutation(len(members))]])
        self.queue[c] = queue[k:]
        return queue[:k]


def real_guided_plan(mode: str, labels, counts, *, strength: float, gamma: float = DIFFMIX_GAMMA,
                     rng: Union[np.random.Generator, int, None] = None):
    """What each image of a real-guided set starts from: (source (M,), condition (M,), soft (M, K)).

    mode: "edit" or "diffmix". labels: the real training images' classes (N,). counts: (K,) how
    many images per class, rows ordered by class as in every synthetic set (class 0's rows
    first); the class of a row is its label for "edit" and its target for "diffmix".

    - edit: row of class c starts from a training image of class c (each image of the class is
      used once, in a seeded order, before any is used again) and is denoised with c's label;
      its soft label is one-hot c.
    - diffmix: row of target class t starts from an image of another class: the source class is
      drawn uniformly from the classes present other than t (so no class dominates the sources
      however common it is), then an image within it as for edit. It is denoised with t's label,
      and its soft label is `diffmix_labels(source class, t, K, strength, gamma)`. Equal counts
      per class make the targets class-balanced.

    Returns the source image indices into `labels`, the class each row is denoised with, and
    the float32 soft labels. All draws come from `rng` (numpy Generator or seed).
    """
    if mode not in REAL_GUIDED_MODES:
        raise UsageError(f"mode must be one of {', '.join(REAL_GUIDED_MODES)}, got {mode!r}")
    strength = check_strength(strength)
    gamma = check_gamma(gamma)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be 1-D integer class indices, got {labels.dtype} {labels.shape}")
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if (counts < 0).any():
        raise ValueError(f"counts must be >= 0, got {counts.tolist()}")
    num_classes = len(counts)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) (one count per class)")
    rng = np.random.default_rng(rng)
    cycler = _Cycler(labels, rng)
    row_class = np.repeat(np.arange(num_classes), counts)
    source = np.empty(len(row_class), dtype=np.int64)
    if mode == "edit":
        for c in range(num_classes):
            if counts[c]:
                source[row_class == c] = cycler.take(c, int(counts[c]))
        soft = np.eye(num_classes, dtype=np.float32)[row_class]
        return source, row_class, soft
    present = np.flatnonzero(np.bincount(labels, minlength=num_classes) > 0)
    source_class = np.empty(len(row_class), dtype=np.int64)
    for t in range(num_classes):
        rows = np.flatnonzero(row_class == t)
        if not len(rows):
            continue
        others = present[present != t]
        if not len(others):
            raise ValueError(f"labels: diffmix needs real images of a class other than the target {t}, and the "
                             f"training set has none")
        source_class[rows] = others[rng.integers(0, len(others), size=len(rows))]
    for c in np.unique(source_class):
        rows = np.flatnonzero(source_class == c)
        source[rows] = cycler.take(int(c), len(rows))
    return source, row_class, diffmix_labels(source_class, row_class, num_classes, strength, gamma)
