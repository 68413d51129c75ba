"""AugMix: random chains of image operations, mixed back into the clean image, with a
Jensen-Shannon consistency loss between the clean and two augmented views.

The operations are tensor ops on the whole batch (no PIL), so AugMix runs on the training
device; they suit grayscale and RGB medical images alike (no colour operations).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from genmix.mixing.base import BatchMixer, check_alpha, generator_device, uniform
from genmix.models.classifiers import soft_cross_entropy
from genmix.ops import sample_beta, sample_dirichlet

__all__ = ["OPERATIONS", "AugMix", "augment_and_mix", "jensen_shannon"]


class AugMix(BatchMixer):
    """Returns [clean; aug1; aug2] (3N images) with the labels repeated three times, and
    `loss` = CE(clean) + jsd_weight * JSD(clean, aug1, aug2).

    Each augmented view mixes `width` chains of 1 to 3 operations (`depth`; None draws it per
    chain and sample) with Dirichlet(alpha) weights, then blends the mix with the clean image
    by m ~ Beta(alpha, alpha). `severity` (1 to 10) scales the operations' strength.
    `value_range` is the range of the input pixels ([-1, 1] as in the synthetic pools).
    """

    name = "augmix"
    batch_multiplier = 3

    def __init__(self, num_classes: int, *, alpha: float = 1.0, width: int = 3, depth: Optional[int] = None,
                 severity: float = 3.0, jsd_weight: float = 12.0, value_range: Sequence[float] = (-1.0, 1.0),
                 generator: Optional[torch.Generator] = None, impl: str = "auto"):
        super().__init__(num_classes, generator=generator, impl=impl)
        self.alpha = check_alpha(alpha)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an int >= 1, got {width!r}")
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 3):
            raise ValueError(f"depth must be None or an int in 1..3, got {depth!r}")
        if isinstance(severity, bool) or not isinstance(severity, (int, float)) or not 0.1 <= severity <= 10:
            raise ValueError(f"severity must be a number in [0.1, 10], got {severity!r}")
        if isinstance(jsd_weight, bool) or not isinstance(jsd_weight, (int, float)) or jsd_weight < 0:
            raise ValueError(f"jsd_weight must be a number >= 0, got {jsd_weight!r}")
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got {tuple(value_range)!r}")
        self.width, self.depth, self.severity = width, depth, float(severity)
        self.jsd_weight = float(jsd_weight)
        self.value_range = (lo, hi)

    def mix(self, x, y_soft):
        lo, hi = self.value_range
        unit = ((x - lo) / (hi - lo)).clamp(0, 1)
        views = [x]
        for _ in range(2):
            aug = augment_and_mix(unit, width=self.width, depth=self.depth, severity=self.severity,
                                  alpha=self.alpha, generator=self.generator, impl=self.impl)
            views.append(aug * (hi - lo) + lo)
        return torch.cat(views), y_soft.repeat(3, 1)

    def loss(self, logits, y_soft):
        """CE on the clean third of the batch plus the weighted JSD of the three views."""
        if logits.ndim != 2 or logits.shape[0] % 3:
            raise ValueError(f"logits must be (3N, K) for the views [clean; aug1; aug2], got {tuple(logits.shape)}")
        n = logits.shape[0] // 3
        clean, aug1, aug2 = logits.split(n)
        if y_soft.shape[0] not in (n, 3 * n):
            raise ValueError(f"y_soft must have {n} or {3 * n} rows, got {tuple(y_soft.shape)}")
        return soft_cross_entropy(clean, y_soft[:n]) + self.jsd_weight * jensen_shannon(clean, aug1, aug2)


def jensen_shannon(*logits: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between the softmax distributions of several views, averaged
    over the batch: 0 exactly when every view predicts the same distribution."""
    probs = [F.softmax(view.float(), dim=1) for view in logits]
    log_mean = torch.stack(probs).mean(0).clamp(1e-7, 1).log()
    return sum(F.kl_div(log_mean, p, reduction="batchmean") for p in probs) / len(probs)


def augment_and_mix(unit: torch.Tensor, *, width: int = 3, depth: Optional[int] = None, severity: float = 3.0,
                    alpha: float = 1.0, generator: Optional[torch.Generator] = None, impl: str = "auto"):
    """One AugMix view of a batch with pixels in [0, 1]: per sample, `width` operation chains mixed
    with Dirichlet(alpha) weights, blended with the input by m ~ Beta(alpha, alpha)."""
    n = unit.shape[0]
    gen_device = generator_device(generator)
    weights = sample_dirichlet(torch.full((n, width), float(alpha), device=gen_device), generator=generator, impl=impl)
    m = sample_beta(n, alpha, alpha, generator=generator, device=gen_device, impl=impl)
    weights = weights.to(unit.device, unit.dtype)
    m = m.to(unit.device, unit.dtype).view(-1, 1, 1, 1)
    mixed = torch.zeros_like(unit)
    for i in range(width):
        mixed = mixed + weights[:, i].view(-1, 1, 1, 1) * _chain(unit, depth, severity, generator)
    return (1 - m) * unit + m * mixed


def _chain(unit, depth, severity, generator):
    """Apply up to three random operations per sample. The random draws do not depend on the
    data, so a seeded generator gives the same chains every time."""
    n = unit.shape[0]
    steps = 3 if depth is None else depth
    gen_device = generator_device(generator)
    if depth is None:
        depths = torch.randint(1, 4, (n,), generator=generator, device=gen_device).to(unit.device)
    else:
        depths = torch.full((n,), depth, device=unit.device)
    out = unit
    for step in range(steps):
        ops = torch.randint(0, len(OPERATIONS), (n,), generator=generator, device=gen_device).to(unit.device)
        # Strength as in AugMix: U(0.1, severity) / 10 of each operation's maximum.
        level = ((0.1 + (severity - 0.1) * uniform(n, generator, unit.device)) / 10).to(unit.dtype)
        sign = torch.where(uniform(n, generator, unit.device) < 0.5, -1.0, 1.0).to(unit.dtype)
        active = depths > step
        new = out.clone()
        for k, op in enumerate(OPERATIONS.values()):
            chosen = torch.nonzero(active & (ops == k)).flatten()
            if chosen.numel():
                new[chosen] = op(out[chosen], level[chosen].view(-1, 1, 1, 1), sign[chosen])
        out = new
    return out


# ------------------------------------------------------------------ operations on [0, 1] images

def _autocontrast(u, level, sign):
    lo = u.amin(dim=(2, 3), keepdim=True)
    span = u.amax(dim=(2, 3), keepdim=True) - lo
    return torch.where(span > 0, (u - lo) / span.clamp_min(1e-12), u)


def _equalize(u, level, sign):
    """Histogram equalisation per image and channel on 256 grey levels."""
    n, c, h, w = u.shape
    q = (u * 255).round().long().clamp(0, 255).reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=u.device).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float32))
    cdf = hist.cumsum(1)
    first = cdf.gather(1, q.min(dim=1, keepdim=True).values)  # pixels at the darkest level
    rest = h * w - first
    lut = (cdf - first) / rest.clamp_min(1)
    out = torch.where(rest > 0, lut.gather(1, q), q.float() / 255)  # a flat image stays as it is
    return out.reshape(n, c, h, w).to(u.dtype)


def _affine(u, matrix):
    grid = F.affine_grid(matrix.to(u.dtype), list(u.shape), align_corners=False)
    return F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotate(u, level, sign):
    angle = sign * level.flatten() * math.radians(30)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    return _affine(u, torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1))


def _shift_matrix(n, like, index, value):
    matrix = torch.eye(2, 3, dtype=like.dtype, device=like.device).repeat(n, 1, 1)
    matrix[:, index[0], index[1]] = value
    return matrix


def _shear_x(u, level, sign):
    return _affine(u, _shift_matrix(u.shape[0], u, (0, 1), sign * level.flatten() * 0.3))


def _shear_y(u, level, sign):
    return _affine(u, _shift_matrix(u.shape[0], u, (1, 0), sign * level.flatten() * 0.3))


def _translate_x(u, level, sign):  # up to a third of the width (2/3 in grid units)
    return _affine(u, _shift_matrix(u.shape[0], u, (0, 2), sign * level.flatten() * 2 / 3))


def _translate_y(u, level, sign):
    return _affine(u, _shift_matrix(u.shape[0], u, (1, 2), sign * level.flatten() * 2 / 3))


def _solarize(u, level, sign):
    return torch.where(u >= 1 - level, 1 - u, u)


def _posterize(u, level, sign):
    """Keep 4 - floor(4 * level) bits (at least 1) of the 8-bit grey levels."""
    bits = (4 - (level * 4).floor()).clamp(min=1)
    step = 2 ** (8 - bits)
    return torch.floor(u * 255 / step) * step / 255


OPERATIONS = {
    "autocontrast": _autocontrast, "equalize": _equalize, "rotate": _rotate, "solarize": _solarize,
    "shear_x": _shear_x, "shear_y": _shear_y, "translate_x": _translate_x, "translate_y": _translate_y,
    "posterize": _posterize,
}
