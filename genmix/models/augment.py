"""Adaptive discriminator augmentation (ADA).

With a few hundred real images a discriminator memorises them and stops teaching the generator.
Augmenting everything the discriminator sees, reals and fakes alike, hides that shortcut. Each
transform is applied with probability p < 1, so the clean images still make up part of what D
sees. D can then tell real from fake without G having to copy the augmentations. `AdaptiveP`
tunes p from how sure D is on the reals, so augmentation is only as strong as overfitting
requires.

Transforms are drawn per sample, and each is chosen on its own with probability p. Once chosen,
its parameter comes from the transform's full distribution, and for flips and 90 degree
rotations that includes the identity, as in StyleGAN2-ADA. So `p` means the same as there. All
geometric transforms go into one 3x3 matrix per sample and one bilinear `grid_sample` with
reflection padding. That is `genmix.ops.grid_sample`, not torch's: the R1 penalty
differentiates D's input gradient through it, and torch's CUDA grid_sample backward has no
derivative, while genmix's is differentiable on every device. Colour transforms go into one
(C+1)x(C+1) matrix per sample. Samples left unchanged are passed through untouched, which keeps
p=0 an exact identity. For power-of-two image sizes, flips, 90 degree rotations and integer
translations are also exact.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from genmix.ops.grid_sample import grid_sample

__all__ = ["AdaptiveP", "AugmentPipe"]


def _check_number(name: str, value, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, dtype=tx.dtype, device=tx.device).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2] = tx
    m[:, 1, 2] = ty
    return m


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    one = torch.ones_like(sx)
    return torch.diag_embed(torch.stack([sx, sy, one], dim=1))


def _rotate(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Given as cos/sin rather than an angle, so 90 degree steps can use exact 0 and +-1 entries.
    m = torch.eye(3, dtype=cos.dtype, device=cos.device).repeat(cos.shape[0], 1, 1)
    m[:, 0, 0] = cos
    m[:, 0, 1] = -sin
    m[:, 1, 0] = sin
    m[:, 1, 1] = cos
    return m


class AugmentPipe(nn.Module):
    """Differentiable, per-sample random augmentation of (N, C, H, W) images in [-1, 1].

    Each keyword without a suffix is a multiplier on `p` for one transform (0 switches it off).
    `xint_max` is the largest integer translation as a fraction of the image size, `rotate_max`
    the largest arbitrary rotation as a fraction of a full turn, and `*_std` the spread of each
    transform's parameter (log2 units for scales). Saturation only applies to 3-channel images.
    `impl` is stored so that `set_impl` treats the pipe like the networks. The resampling is
    `genmix.ops.grid_sample`, which calls torch's own kernels on every device and has no `impl`
    choice; it exists so that second derivatives (R1) work on CUDA too.
    """

    def __init__(self, *, xflip=1, rotate90=1, xint=1, xint_max=0.125, scale=1, rotate=1, aniso=1,
                 xfrac=0, scale_std=0.2, rotate_max=1.0, aniso_std=0.2, xfrac_std=0.125,
                 brightness=1, contrast=1, saturation=1, brightness_std=0.2, contrast_std=0.5,
                 saturation_std=1.0, impl="auto"):
        super().__init__()
        self.xflip = _check_number("xflip", xflip)
        self.rotate90 = _check_number("rotate90", rotate90)
        self.xint = _check_number("xint", xint)
        self.xint_max = _check_number("xint_max", xint_max, high=0.5)
        self.scale = _check_number("scale", scale)
        self.rotate = _check_number("rotate", rotate)
        self.aniso = _check_number("aniso", aniso)
        self.xfrac = _check_number("xfrac", xfrac)
        self.scale_std = _check_number("scale_std", scale_std)
        self.rotate_max = _check_number("rotate_max", rotate_max, high=1.0)
        self.aniso_std = _check_number("aniso_std", aniso_std)
        self.xfrac_std = _check_number("xfrac_std", xfrac_std)
        self.brightness = _check_number("brightness", brightness)
        self.contrast = _check_number("contrast", contrast)
        self.saturation = _check_number("saturation", saturation)
        self.brightness_std = _check_number("brightness_std", brightness_std)
        self.contrast_std = _check_number("contrast_std", contrast_std)
        self.saturation_std = _check_number("saturation_std", saturation_std)
        if not isinstance(impl, str):
            raise TypeError(f"impl must be a string, got {type(impl).__name__}")
        self.impl = impl
        self.register_buffer("p", torch.zeros([]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if not images.is_floating_point() or images.ndim != 4:
            raise ValueError(f"images must be a float tensor of shape (N, C, H, W), "
                             f"got dtype {images.dtype} and shape {tuple(images.shape)}")
        p = float(self.p)
        if p == 0 or images.shape[0] == 0:
            return images
        images = self._geometric(images, p)
        return self._colour(images, p)

    def _chosen(self, weight: float, p: float, value: torch.Tensor, identity) -> torch.Tensor:
        """`value` where this sample's coin (probability weight * p) came up, else `identity`."""
        hit = torch.rand(value.shape[0], device=value.device) < weight * p
        if value.ndim > 1:
            hit = hit.reshape(-1, *[1] * (value.ndim - 1))
        return torch.where(hit, value, torch.as_tensor(identity, dtype=value.dtype, device=value.device))

    def _geometric(self, images: torch.Tensor, p: float) -> torch.Tensor:
        n, _, h, w = images.shape
        dev = images.device
        # The matrix maps each output pixel to where it samples from. That is the inverse of how
        # the content moves, but every parameter is drawn from a symmetric distribution, so
        # drawing the inverse directly gives the same augmentations.
        g = torch.eye(3, device=dev).repeat(n, 1, 1)
        if self.xflip > 0:
            flip = self._chosen(self.xflip, p, torch.randint(0, 2, [n], device=dev), 0)
            g = g @ _scale(1 - 2 * flip.float(), torch.ones(n, device=dev))
        if self.rotate90 > 0:
            k = self._chosen(self.rotate90, p, torch.randint(0, 4, [n], device=dev), 0)
            cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=dev)[k]
            sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=dev)[k]
            g = g @ _rotate(cos, sin)
        if self.xint > 0:
            t = (torch.rand(n, 2, device=dev) * 2 - 1) * self.xint_max
            t = self._chosen(self.xint, p, t, 0.0)
            g = g @ _translate(torch.round(t[:, 0] * w), torch.round(t[:, 1] * h))
        if self.scale > 0:
            s = self._chosen(self.scale, p, torch.exp2(torch.randn(n, device=dev) * self.scale_std), 1.0)
            g = g @ _scale(s, s)
        if self.rotate > 0:
            theta = (torch.rand(n, device=dev) * 2 - 1) * (math.pi * self.rotate_max)
            theta = self._chosen(self.rotate, p, theta, 0.0)
            g = g @ _rotate(torch.cos(theta), torch.sin(theta))
        if self.aniso > 0:
            a = self._chosen(self.aniso, p, torch.exp2(torch.randn(n, device=dev) * self.aniso_std), 1.0)
            g = g @ _scale(a, 1 / a)
        if self.xfrac > 0:
            t = self._chosen(self.xfrac, p, torch.randn(n, 2, device=dev) * self.xfrac_std, 0.0)
            g = g @ _translate(t[:, 0] * w, t[:, 1] * h)

        changed = (g != torch.eye(3, device=dev)).flatten(1).any(dim=1)
        if not bool(changed.any()):
            return images
        # Half precision cannot address pixels of large images accurately, so sample in float32.
        dtype = torch.promote_types(images.dtype, torch.float32)
        # Output pixel centres in pixel units about the image centre. In normalized coordinates
        # (align_corners=False) centre i is (i + 0.5 - size / 2) * 2 / size, exact for power-of-two
        # sizes, so integer-only transforms hit source pixel centres exactly.
        xs = torch.arange(w, device=dev, dtype=dtype) + (0.5 - w / 2)
        ys = torch.arange(h, device=dev, dtype=dtype) + (0.5 - h / 2)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack([xx, yy, torch.ones_like(xx)], dim=-1).reshape(1, h * w, 3)
        src = points @ g.to(dtype).transpose(1, 2)
        grid = (src[..., :2] * torch.tensor([2 / w, 2 / h], device=dev, dtype=dtype)).reshape(n, h, w, 2)
        out = grid_sample(images.to(dtype), grid, padding_mode="reflection",
                          align_corners=False).to(images.dtype)
        return torch.where(changed.reshape(n, 1, 1, 1), out, images)

    def _colour(self, images: torch.Tensor, p: float) -> torch.Tensor:
        n, c, h, w = images.shape
        dev = images.device
        # Homogeneous colour matrix: the last column is the offset added to every channel.
        m = torch.eye(c + 1, device=dev).repeat(n, 1, 1)
        if self.brightness > 0:
            b = self._chosen(self.brightness, p, torch.randn(n, device=dev) * self.brightness_std, 0.0)
            t = torch.eye(c + 1, device=dev).repeat(n, 1, 1)
            t[:, :c, c] = b[:, None]
            m = t @ m
        if self.contrast > 0:
            s = torch.exp2(torch.randn(n, device=dev) * self.contrast_std)
            s = self._chosen(self.contrast, p, s, 1.0)
            t = torch.diag_embed(torch.cat([s[:, None].expand(n, c), torch.ones(n, 1, device=dev)], dim=1))
            m = t @ m
        if self.saturation > 0 and c == 3:
            s = torch.exp2(torch.randn(n, device=dev) * self.saturation_std)
            s = self._chosen(self.saturation, p, s, 1.0)
            # Scale only the part of each colour off the grey axis; the channel mean is kept.
            v = torch.full([3, 1], 1 / math.sqrt(3), device=dev)
            grey = v @ v.t()
            t = torch.eye(c + 1, device=dev).repeat(n, 1, 1)
            t[:, :3, :3] = grey + (torch.eye(3, device=dev) - grey) * s[:, None, None]
            m = t @ m

        changed = (m != torch.eye(c + 1, device=dev)).flatten(1).any(dim=1)
        if not bool(changed.any()):
            return images
        m = m.to(images.dtype)
        flat = images.reshape(n, c, h * w)
        out = (m[:, :c, :c] @ flat + m[:, :c, c:]).reshape(n, c, h, w)
        return torch.where(changed.reshape(n, 1, 1, 1), out, images)

    def extra_repr(self):
        on = [name for name in ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
                                "brightness", "contrast", "saturation") if getattr(self, name) > 0]
        return f"p={float(self.p):.4f}, transforms={on}"


class AdaptiveP:
    """Adjusts `pipe.p` from the overfitting heuristic r_t = E[sign(D(real))].

    r_t near 1 means D is sure about every real image, which means it has memorised them. Every
    `interval` discriminator steps p moves towards more augmentation when r_t > target and
    towards less when r_t < target. The step is sized so that p can cross [0, 1] in `kimg`
    thousand real images. `batch_size` is the number of real images per discriminator step,
    summed over all processes. The statistic is a (sum, count) pair, so processes can add
    theirs up (`update(reduce=...)`) and all reach the same p.
    """

    def __init__(self, pipe: AugmentPipe, *, batch_size: int, target: float = 0.6, interval: int = 4,
                 kimg: float = 500):
        if not isinstance(pipe, AugmentPipe):
            raise TypeError(f"pipe must be an AugmentPipe, got {type(pipe).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be a positive int, got {interval!r}")
        self.pipe = pipe
        self.batch_size = batch_size
        self.interval = interval
        self.target = _check_number("target", target, low=-1.0, high=1.0)
        self.kimg = _check_number("kimg", kimg)
        if self.kimg == 0:
            raise ValueError("kimg must be > 0")
        self._stats = torch.zeros(2, dtype=torch.float64)  # sum of sign(D(real)), number of logits
        self._calls = 0

    @property
    def p(self) -> float:
        return float(self.pipe.p)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record the signs of one step's D(real) outputs; stays on their device, no sync."""
        if not isinstance(real_logits, torch.Tensor):
            raise TypeError(f"real_logits must be a torch.Tensor, got {type(real_logits).__name__}")
        if not real_logits.is_floating_point():
            raise ValueError(f"real_logits must be floating point, got dtype {real_logits.dtype}")
        x = real_logits.detach()
        step = torch.stack([x.sign().to(torch.float64).sum(),
                            torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device)])
        self._stats = self._stats.to(x.device) + step
        self._calls += 1

    def update(self, *, reduce: Optional[Callable[[torch.Tensor], Optional[torch.Tensor]]] = None):
        """Adjust p once `interval` steps have been accumulated; returns r_t then, else None.

        `reduce` receives a copy of the (sum, count) tensor and either returns the combined
        tensor or combines it in place and returns None, as `torch.distributed.all_reduce` does.
        """
        if self._calls < self.interval:
            return None
        stats = self._stats.clone()
        if reduce is not None:
            reduced = reduce(stats)
            stats = stats if reduced is None else reduced
        calls = self._calls
        self._stats = torch.zeros_like(self._stats)
        self._calls = 0
        total, count = (float(v) for v in stats.tolist())
        if count == 0:
            return None
        r_t = total / count
        if r_t != self.target:
            step = math.copysign(self.batch_size * calls / (self.kimg * 1000), r_t - self.target)
            self.pipe.p.fill_(min(max(self.p + step, 0.0), 1.0))
        return r_t

    def state_dict(self) -> dict:
        return {"p": self.pipe.p.detach().clone(), "stats": self._stats.detach().cpu().clone(),
                "calls": self._calls}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or not {"p", "stats", "calls"} <= set(state):
            raise ValueError("state must be a dict with keys 'p', 'stats' and 'calls' "
                             "(from AdaptiveP.state_dict())")
        p = float(torch.as_tensor(state["p"]))
        if not 0 <= p <= 1:
            raise ValueError(f"state['p'] must be in [0, 1], got {p}")
        stats = torch.as_tensor(state["stats"], dtype=torch.float64)
        if stats.shape != (2,):
            raise ValueError(f"state['stats'] must have shape (2,), got {tuple(stats.shape)}")
        self.pipe.p.fill_(p)
        self._stats = stats.clone()
        self._calls = int(state["calls"])
