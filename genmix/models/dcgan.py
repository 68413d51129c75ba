"""Conditional DCGAN baseline, the simplest generator the comparison includes.

It has the same constructor attributes and call signatures as `genmix.models.stylegan2`, so
the training loop, losses (non-saturating logistic + R1) and synthesis code use either one
unchanged. Labels are float vectors, so one-hot and soft (mixed) labels both condition it.
Generator: z concatenated with a linear label embedding, projected to 4x4, then
ConvTranspose2d(4, 2, 1) + BatchNorm + ReLU up to the image size and a tanh output.
Discriminator: strided convolutions + LeakyReLU(0.2) down to 4x4, scored by projection (the
inner product of a label embedding with the final features). It has no BatchNorm, so each
score depends only on its own sample, as the R1 penalty assumes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genmix.models._checks import NOISE_MODES, check_float_matrix, check_resolution
from genmix.ops import bias_act

__all__ = ["DCGANDiscriminator", "DCGANGenerator"]

MIN_RESOLUTION = 16


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _channels(base_channels: int, img_resolution: int, resolution: int) -> int:
    # Classic DCGAN widths: base at the largest feature map, doubling per halving, capped at 8x.
    return base_channels * min(8, img_resolution // (2 * resolution))


def _dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) weights, BatchNorm scales near 1."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _check_labels(c, c_dim: int, batch: int):
    """Validated labels, or None for an unconditional model (which ignores c)."""
    if c_dim == 0:
        return None
    return check_float_matrix("c", c, c_dim, batch)


class DCGANGenerator(nn.Module):
    """Conditional DCGAN generator: forward(z, c) -> (N, img_channels, R, R) in [-1, 1]."""

    def __init__(self, z_dim, c_dim, img_resolution, img_channels, base_channels=64, impl="auto"):
        super().__init__()
        self.z_dim = _check_positive_int("z_dim", z_dim)
        self.c_dim = _check_positive_int("c_dim", c_dim, minimum=0)
        self.img_resolution = check_resolution("img_resolution", img_resolution, MIN_RESOLUTION)
        self.img_channels = _check_positive_int("img_channels", img_channels)
        self.base_channels = _check_positive_int("base_channels", base_channels)
        self.impl = impl
        ch = {r: _channels(base_channels, img_resolution, r)
              for r in [2 ** i for i in range(2, int(math.log2(img_resolution)))]}
        # The embedding is as wide as z, so the label weighs as much as the noise at the input.
        self.embed = nn.Linear(c_dim, z_dim, bias=False) if c_dim > 0 else None
        in_features = z_dim * 2 if c_dim > 0 else z_dim
        # No biases before BatchNorm: its shift parameter plays that role.
        self.project = nn.Linear(in_features, ch[4] * 16, bias=False)
        self.project_norm = nn.BatchNorm2d(ch[4])
        self.blocks = nn.ModuleList()
        self.norms = nn.ModuleList()
        for r in sorted(ch)[1:]:
            self.blocks.append(nn.ConvTranspose2d(ch[r // 2], ch[r], 4, 2, 1, bias=False))
            self.norms.append(nn.BatchNorm2d(ch[r]))
        self.to_img = nn.ConvTranspose2d(ch[img_resolution // 2], img_channels, 4, 2, 1, bias=False)
        self.to_img_bias = nn.Parameter(torch.zeros(img_channels))
        _dcgan_init(self)
        if self.embed is not None:
            # Unit variance like z, so the label is not drowned out at the start.
            nn.init.normal_(self.embed.weight)

    def forward(self, z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode="random",
                fused_modconv=None, update_w_avg=True, truncation_center="class"):
        """The arguments after `truncation_psi` are there for the StyleGAN2 signature and are
        ignored, because DCGAN has no w space and no noise inputs. `truncation_psi` scales z
        towards 0, a crude truncation (there is no w_avg, per class or global, to pull to)."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if truncation_center not in ("class", "global"):
            raise ValueError(f"truncation_center must be 'class' or 'global', got {truncation_center!r}")
        z = check_float_matrix("z", z, self.z_dim)
        c = _check_labels(c, self.c_dim, z.shape[0])
        dtype = self.project.weight.dtype
        x = z.to(dtype) * truncation_psi if truncation_psi != 1 else z.to(dtype)
        if self.embed is not None:
            x = torch.cat([x, self.embed(c.to(dtype))], dim=1)
        x = self.project(x).reshape(x.shape[0], -1, 4, 4)
        x = bias_act(self.project_norm(x), act="relu", gain=1, impl=self.impl)
        for conv, norm in zip(self.blocks, self.norms):
            x = bias_act(norm(conv(x)), act="relu", gain=1, impl=self.impl)
        return bias_act(self.to_img(x), self.to_img_bias, act="tanh", impl=self.impl)

    def extra_repr(self):
        return (f"z_dim={self.z_dim}, c_dim={self.c_dim}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, base_channels={self.base_channels}")


class DCGANDiscriminator(nn.Module):
    """Conditional DCGAN discriminator: forward(img, c) -> (N, 1) logits."""

    def __init__(self, c_dim, img_resolution, img_channels, base_channels=64, impl="auto"):
        super().__init__()
        self.c_dim = _check_positive_int("c_dim", c_dim, minimum=0)
        self.img_resolution = check_resolution("img_resolution", img_resolution, MIN_RESOLUTION)
        self.img_channels = _check_positive_int("img_channels", img_channels)
        self.base_channels = _check_positive_int("base_channels", base_channels)
        self.impl = impl
        # Bias is added by bias_act together with the activation, one pass instead of two.
        self.convs = nn.ModuleList()
        self.biases = nn.ParameterList()
        in_channels = img_channels
        r = img_resolution // 2
        while r >= 4:
            out_channels = _channels(base_channels, img_resolution, r)
            self.convs.append(nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False))
            self.biases.append(nn.Parameter(torch.zeros(out_channels)))
            in_channels = out_channels
            r //= 2
        # Projection conditioning: features of width cmap_dim dotted with the label embedding.
        # The score is linear in c, so a soft label scores as the mix of its classes' scores.
        self.cmap_dim = in_channels if c_dim > 0 else 0
        self.out = nn.Linear(in_channels * 16, self.cmap_dim if c_dim > 0 else 1)
        self.embed = nn.Linear(c_dim, self.cmap_dim, bias=False) if c_dim > 0 else None
        _dcgan_init(self)
        if self.embed is not None:
            # Unit-variance embeddings, so the score's scale does not start at 0.02 squared.
            nn.init.normal_(self.embed.weight)

    def forward(self, img, c):
        r, ch = self.img_resolution, self.img_channels
        if (not isinstance(img, torch.Tensor) or not img.is_floating_point() or img.ndim != 4
                or img.shape[1:] != (ch, r, r)):
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f"img must be a float tensor of shape (N, {ch}, {r}, {r}), got {shape}")
        c = _check_labels(c, self.c_dim, img.shape[0])
        x = img.to(self.out.weight.dtype)
        for conv, b in zip(self.convs, self.biases):
            x = bias_act(conv(x), b, act="lrelu", alpha=0.2, gain=1, impl=self.impl)
        x = self.out(x.flatten(1))
        if self.embed is not None:
            cmap = self.embed(c.to(x.dtype))
            # 1/sqrt(cmap_dim) keeps the score's scale independent of the embedding width.
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

    def extra_repr(self):
        return (f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, base_channels={self.base_channels}")
