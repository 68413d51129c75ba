"""Class-conditional diffusion model whose label is a float vector, so soft labels condition it.

GeMix asks the generator for images such as "70% benign, 30% malignant". A UNet that looks its
label up in an embedding table can only be asked for whole classes; this one embeds the label
with a linear map, so a one-hot row and a soft row are the same kind of input and the embedding
of a mixture is the mixture of the class embeddings. A learned null embedding stands in for the
label when it is dropped, which gives classifier-free guidance.

Formulation: EDM (Karras, Aittala, Aila and Laine, "Elucidating the Design Space of
Diffusion-Based Generative Models", NeurIPS 2022), chosen over DDPM's discrete noise schedule for
three reasons that matter here:

* Small data. The network never sees raw noisy images: its input is scaled to unit variance
  (c_in), its target is scaled to unit variance (c_out), and the skip c_skip * x hands it the part
  of the answer the noisy input already contains. Each noise level is then an equally well-posed
  regression problem, and the loss weight lambda(sigma) makes the expected loss of an untrained
  network exactly 1 at every sigma, so no noise level dominates the gradient. Training sigmas are
  drawn log-normally around the levels where the loss can still be reduced (P_mean, P_std), not
  uniformly over a 1000-step schedule of which most steps teach little; with a few thousand
  medical images the whole training budget goes to the levels that shape the images.
* Few deterministic steps. Sampling solves the probability-flow ODE, whose trajectories are
  nearly straight under EDM's parametrisation (sigma(t) = t, no rescaling of x), with Heun's
  second-order method on the rho=7 schedule that spends the steps at low noise: 18 steps (35
  network evaluations) match hundreds of DDPM ancestral steps. That is what makes sampling a
  synthetic data set feasible on a CPU. Being deterministic, the same seed gives the same images.
* Continuous noise conditioning: the network takes c_noise = ln(sigma)/4, so training and
  sampling may use any set of noise levels; the schedule is a sampler setting, not part of the
  model.

Every module takes `impl` ("auto", "cpp", "triton", "cuda" or "ref") and passes it to the fused
ops (`bias_act`, `upfirdn2d`) it calls; `set_impl(module, impl)` switches a whole network.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genmix.models._checks import check_float_matrix as _check_float_matrix
from genmix.models.stylegan2 import set_impl
from genmix.ops import bias_act, setup_filter, upfirdn2d

__all__ = [
    "AttentionBlock",
    "DiffusionUNet",
    "EDMPrecond",
    "ResBlock",
    "edm_edit",
    "edm_heun_step",
    "edm_loss",
    "edm_sample",
    "edm_sigma_steps",
    "edm_strength_sigma",
    "set_impl",
]

DEFAULT_RESAMPLE_FILTER = (1, 3, 3, 1)
# The lowest feature map the UNet may reach: below 4x4 the 4-tap filter sees mostly padding.
MIN_LOWEST_RESOLUTION = 4
SKIP_SCALE = math.sqrt(0.5)  # keeps the variance of a residual sum of two unit-variance terms


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_real(name: str, value, minimum: float | None = None, maximum: float | None = None,
                strict_minimum: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict_minimum else '>='} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def _num_groups(channels: int) -> int:
    # Up to 32 groups, but at least 4 channels per group so the statistics are stable; the
    # count must divide the channels.
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return groups


def _randn(shape, generator, device, dtype=torch.float32):
    """Standard normal draws from `generator` (on its own device), placed on `device`."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def _rand(shape, generator, device):
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _check_images(name: str, x, channels: int, resolution: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, {channels}, {resolution}, {resolution}), "
                        f"got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1:] != (channels, resolution, resolution):
        hint = ""
        if x.ndim == 4 and x.shape[1] == channels and x.shape[2] == x.shape[3] < resolution:
            hint = f" (pad or resize {x.shape[2]}-px images to {resolution} px before the model)"
        raise ValueError(f"{name} must have shape (N, {channels}, {resolution}, {resolution}), "
                         f"got {tuple(x.shape)}{hint}")
    return x


def _per_sample(name: str, value, batch: int, device) -> torch.Tensor:
    """A number, a 0-d tensor or an (N,) / (N, 1, 1, 1) tensor as a float32 (N,) tensor."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be floating point, got dtype {value.dtype}")
        if value.ndim == 0:
            value = value.reshape(1).expand(batch)
        elif value.numel() != batch or value.shape[0] != batch or any(s != 1 for s in value.shape[1:]):
            raise ValueError(f"{name} must be a number or a tensor of shape ({batch},), got {tuple(value.shape)}")
        return value.reshape(batch).to(device=device, dtype=torch.float32)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or a float tensor, got {type(value).__name__}")
    return torch.full((batch,), float(value), device=device)


# --------------------------------------------------------------------------------------- layers

class Linear(nn.Module):
    """Dense layer whose bias is added by `bias_act` together with the activation."""

    def __init__(self, in_features, out_features, bias=True, init_scale=1.0, impl="auto"):
        super().__init__()
        self.impl = impl
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (init_scale / math.sqrt(in_features)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x, act="linear"):
        x = x.matmul(self.weight.to(x.dtype).t())
        if self.bias is None and act == "linear":
            return x
        return bias_act(x, self.bias, act=act, gain=1, impl=self.impl)


class GroupNormSwish(nn.Module):
    """GroupNorm then SiLU; GroupNorm's shift is applied by the fused `bias_act`."""

    def __init__(self, channels, impl="auto"):
        super().__init__()
        self.impl = impl
        self.num_groups = _num_groups(channels)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        x = F.group_norm(x, self.num_groups, self.weight.to(x.dtype), None)
        return bias_act(x, self.bias, act="swish", gain=1, impl=self.impl)


class Resample(nn.Module):
    """2x down- or up-sampling with the [1, 3, 3, 1] FIR filter through `upfirdn2d`."""

    def __init__(self, mode, resample_filter=DEFAULT_RESAMPLE_FILTER, impl="auto"):
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode must be 'down' or 'up', got {mode!r}")
        self.mode = mode
        self.impl = impl
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        taps = self.resample_filter.shape[-1]
        if mode == "down":
            self.padding = [(taps - 1) // 2, (taps - 2) // 2] * 2
        else:
            self.padding = [(taps + 1) // 2, (taps - 2) // 2] * 2

    def forward(self, x):
        f = self.resample_filter
        if self.mode == "down":
            return upfirdn2d(x, f, down=2, padding=self.padding, impl=self.impl)
        # Zero insertion leaves 1 in 4 samples non-zero; gain 4 restores the mean.
        return upfirdn2d(x, f, up=2, padding=self.padding, gain=4, impl=self.impl)

    def extra_repr(self):
        return f"mode={self.mode}"


def _conv(in_channels, out_channels, kernel_size, zero_init=False):
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    if zero_init:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, then GroupNorm modulated by the embedding (per-channel scale and
    shift), SiLU, dropout and a second conv, added to the (projected) input.

    The second conv starts at zero, so every block starts as the identity on its skip path.
    """

    def __init__(self, in_channels, out_channels, emb_channels, dropout=0.0, impl="auto"):
        super().__init__()
        self.impl = impl
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dropout = dropout
        self.norm0 = GroupNormSwish(in_channels, impl=impl)
        self.conv0 = _conv(in_channels, out_channels, 3)
        self.num_groups1 = _num_groups(out_channels)
        # Scale and shift from the embedding; the shift's bias is added inside bias_act.
        self.affine = Linear(emb_channels, 2 * out_channels, bias=False, impl=impl)
        self.scale_bias = nn.Parameter(torch.zeros(out_channels))
        self.shift_bias = nn.Parameter(torch.zeros(out_channels))
        self.conv1 = _conv(out_channels, out_channels, 3, zero_init=True)
        self.skip = _conv(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x, emb):
        h = self.conv0(self.norm0(x))
        scale, shift = self.affine(emb).to(h.dtype).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        scale = scale + (1 + self.scale_bias.to(h.dtype)).reshape(1, -1, 1, 1)
        h = torch.addcmul(shift, F.group_norm(h, self.num_groups1), scale)
        h = bias_act(h, self.shift_bias, act="swish", gain=1, impl=self.impl)
        if self.dropout > 0:
            h = F.dropout(h, p=self.dropout, training=self.training)
        # (conv1(h) + skip) * SKIP_SCALE with the scale folded into the weights: one pass less.
        h = F.conv2d(h, self.conv1.weight * SKIP_SCALE, self.conv1.bias * SKIP_SCALE, padding=1)
        if self.skip is not None:
            return h + F.conv2d(x, self.skip.weight * SKIP_SCALE, self.skip.bias * SKIP_SCALE)
        return torch.add(h, x, alpha=SKIP_SCALE)

    def extra_repr(self):
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, dropout={self.dropout}"


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, added residually."""

    def __init__(self, channels, head_channels=32, impl="auto"):
        super().__init__()
        self.impl = impl
        self.channels = channels
        self.num_heads = max(1, channels // head_channels)
        if channels % self.num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by the number of heads ({self.num_heads})")
        self.num_groups = _num_groups(channels)
        self.norm_weight = nn.Parameter(torch.ones(channels))
        self.norm_bias = nn.Parameter(torch.zeros(channels))
        self.qkv = _conv(channels, 3 * channels, 1)
        self.proj = _conv(channels, channels, 1, zero_init=True)

    def forward(self, x):
        n, c, h, w = x.shape
        y = F.group_norm(x, self.num_groups, self.norm_weight.to(x.dtype), self.norm_bias.to(x.dtype))
        q, k, v = self.qkv(y).reshape(n, 3, self.num_heads, c // self.num_heads, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)  # (n, heads, hw, head_channels)
        y = y.transpose(-1, -2).reshape(n, c, h, w)
        if x.is_contiguous(memory_format=torch.channels_last):
            y = y.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(y, self.proj.weight * SKIP_SCALE, self.proj.bias * SKIP_SCALE)
        return torch.add(y, x, alpha=SKIP_SCALE)

    def extra_repr(self):
        return f"channels={self.channels}, num_heads={self.num_heads}"


class FourierEmbedding(nn.Module):
    """sin/cos of the noise level at fixed, geometrically spaced angular frequencies 1..100.

    c_noise = ln(sigma)/4 spans about [-1.6, 1.1] over sigma in [0.002, 80]; the lowest frequency
    turns less than half a period over that range, the highest one period per 0.25 in ln(sigma).
    """

    def __init__(self, channels, max_frequency=100.0):
        super().__init__()
        if channels % 2:
            raise ValueError(f"channels must be even, got {channels}")
        freqs = torch.from_numpy(np.geomspace(1.0, max_frequency, channels // 2)).float()
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, c_noise):
        x = c_noise.to(self.freqs.dtype).unsqueeze(1) * self.freqs.unsqueeze(0)
        return torch.cat([x.cos(), x.sin()], dim=1)


# ----------------------------------------------------------------------------------------- UNet

class DiffusionUNet(nn.Module):
    """UNet F(x; c_noise, c) for square images of `img_resolution` px (a power of two).

    Encoder: a 3x3 conv to `model_channels`, then per level `num_blocks` residual blocks at
    `model_channels * channel_mult[level]` channels (self-attention after each block whose
    resolution is in `attn_resolutions`) and a 2x FIR downsampling between levels. Middle: block,
    attention, block. Decoder: per level `num_blocks + 1` blocks, each fed the concatenation with
    one encoder output, and a 2x FIR upsampling between levels. Output: GroupNorm, SiLU and a
    zero-initialised 3x3 conv, so an untrained network outputs 0.

    Conditioning: `emb = SiLU(MLP(Fourier(c_noise)) + c @ W)`, where `W` (label_dim x emb) is
    the linear label embedding, replaced by the learned `null_label` vector for samples that are
    dropped (probability `label_dropout` per sample in training) or forced unconditional. Every
    residual block turns `emb` into a per-channel scale and shift of its normalised features.

    The caller pads or resizes images to `img_resolution` (e.g. 28-px MedMNIST to 32 px).
    """

    def __init__(self, img_resolution, img_channels, label_dim, model_channels=16, channel_mult=(1, 2, 4),
                 num_blocks=1, attn_resolutions=(8,), dropout=0.0, label_dropout=0.1, emb_mult=4,
                 head_channels=32, channels_last=None, impl="auto"):
        super().__init__()
        self.img_resolution = _check_int("img_resolution", img_resolution, 1)
        self.img_channels = _check_int("img_channels", img_channels, 1)
        self.label_dim = _check_int("label_dim", label_dim, 1)
        self.model_channels = _check_int("model_channels", model_channels, 4)
        if model_channels % 4:
            raise ValueError(f"model_channels must be a multiple of 4, got {model_channels}")
        channel_mult = tuple(channel_mult)
        if not channel_mult:
            raise ValueError("channel_mult must name at least one level")
        for m in channel_mult:
            _check_int("channel_mult entries", m, 1)
        self.channel_mult = channel_mult
        self.num_blocks = _check_int("num_blocks", num_blocks, 1)
        self.attn_resolutions = tuple(_check_int("attn_resolutions entries", r, 1) for r in attn_resolutions)
        self.dropout = _check_real("dropout", dropout, 0.0, 1.0)
        self.label_dropout = _check_real("label_dropout", label_dropout, 0.0, 1.0)
        self.impl = impl
        if channels_last not in (None, True, False):
            raise TypeError(f"channels_last must be None, True or False, got {channels_last!r}")
        self.channels_last = channels_last
        r = img_resolution
        lowest = r >> (len(channel_mult) - 1)
        if r & (r - 1) or lowest < MIN_LOWEST_RESOLUTION:
            smallest = MIN_LOWEST_RESOLUTION << (len(channel_mult) - 1)
            raise ValueError(f"img_resolution must be a power of two with {len(channel_mult)} levels down to at "
                             f"least {MIN_LOWEST_RESOLUTION} px, i.e. >= {smallest}, got {img_resolution} "
                             "(pad or resize the images to the next power of two)")

        emb_channels = model_channels * emb_mult
        self.emb_channels = emb_channels
        self.noise_embed = FourierEmbedding(model_channels)
        self.noise_fc0 = Linear(model_channels, emb_channels, impl=impl)
        self.noise_fc1 = Linear(emb_channels, emb_channels, bias=False, impl=impl)
        self.emb_bias = nn.Parameter(torch.zeros(emb_channels))
        # Unit-variance class embeddings: a one-hot label weighs as much as the noise embedding.
        self.label_embed = Linear(label_dim, emb_channels, bias=False, init_scale=math.sqrt(label_dim), impl=impl)
        self.null_label = nn.Parameter(torch.zeros(emb_channels))

        self.conv_in = _conv(img_channels, model_channels, 3)
        self.enc = nn.ModuleList()
        skips = [model_channels]
        ch = model_channels
        for level, mult in enumerate(channel_mult):
            res = r >> level
            if level > 0:
                self.enc.append(Resample("down", impl=impl))
                skips.append(ch)
            for _ in range(num_blocks):
                out = model_channels * mult
                self.enc.append(ResBlock(ch, out, emb_channels, dropout, impl=impl))
                ch = out
                if res in self.attn_resolutions:
                    self.enc.append(AttentionBlock(ch, head_channels, impl=impl))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_channels, dropout, impl=impl),
                                  AttentionBlock(ch, head_channels, impl=impl),
                                  ResBlock(ch, ch, emb_channels, dropout, impl=impl)])
        self.dec = nn.ModuleList()
        for level in reversed(range(len(channel_mult))):
            res = r >> level
            for _ in range(num_blocks + 1):
                out = model_channels * channel_mult[level]
                self.dec.append(ResBlock(ch + skips.pop(), out, emb_channels, dropout, impl=impl))
                ch = out
                if res in self.attn_resolutions:
                    self.dec.append(AttentionBlock(ch, head_channels, impl=impl))
            if level > 0:
                self.dec.append(Resample("up", impl=impl))
        assert not skips
        self.norm_out = GroupNormSwish(ch, impl=impl)
        self.conv_out = _conv(ch, img_channels, 3, zero_init=True)

    # -------------------------------------------------------------------------- conditioning

    def uncond_mask(self, batch, force_uncond=None, generator=None, device=None):
        """Which samples get the null label: (batch,) bool tensor, or None for none.

        `force_uncond` None: in training, each sample independently with probability
        `label_dropout` (drawn from `generator`, else the global RNG); in eval, none. A bool or
        a (batch,) bool tensor: exactly those samples, in training as in eval.
        """
        if force_uncond is None:
            if not self.training or self.label_dropout == 0:
                return None
            if self.label_dropout == 1:
                return torch.ones(batch, dtype=torch.bool, device=device)
            return _rand((batch,), generator, device) < self.label_dropout
        if isinstance(force_uncond, bool):
            return torch.full((batch,), force_uncond, dtype=torch.bool, device=device)
        if not isinstance(force_uncond, torch.Tensor) or force_uncond.dtype != torch.bool:
            raise TypeError(f"force_uncond must be None, a bool or a bool tensor of shape ({batch},), "
                            f"got {type(force_uncond).__name__}"
                            + (f" of dtype {force_uncond.dtype}" if isinstance(force_uncond, torch.Tensor) else ""))
        if force_uncond.ndim == 0:
            return force_uncond.to(device).expand(batch)
        if force_uncond.shape != (batch,):
            raise ValueError(f"force_uncond must have shape ({batch},), got {tuple(force_uncond.shape)}")
        return force_uncond.to(device)

    def embed_labels(self, c, force_uncond=None, generator=None):
        """The label's contribution to the embedding, (N, emb_channels): c @ W, linear in c, or
        the null embedding where the sample is dropped (see `uncond_mask`)."""
        c = _check_float_matrix("c", c, self.label_dim)
        dtype = self.label_embed.weight.dtype
        y = self.label_embed(c.to(dtype))
        mask = self.uncond_mask(c.shape[0], force_uncond, generator, c.device)
        if mask is not None:
            y = torch.where(mask.unsqueeze(1), self.null_label.to(dtype).unsqueeze(0), y)
        return y

    def embed(self, c_noise, c, force_uncond=None, generator=None):
        """The conditioning vector every residual block reads, (N, emb_channels)."""
        t = self.noise_fc0(self.noise_embed(c_noise), act="swish")
        t = self.noise_fc1(t)
        return bias_act(t + self.embed_labels(c, force_uncond, generator), self.emb_bias, act="swish", gain=1,
                        impl=self.impl)

    # ------------------------------------------------------------------------------- forward

    def forward(self, x, c_noise, c, *, force_uncond=None, generator=None):
        """F(x; c_noise, c): x (N, C, R, R) float; c_noise a number or (N,) tensor (EDMPrecond
        passes ln(sigma)/4); c (N, label_dim) float rows, one-hot or soft. See `uncond_mask` for
        `force_uncond` and `generator`. Returns (N, C, R, R) in the dtype of the parameters."""
        x = _check_images("x", x, self.img_channels, self.img_resolution)
        n = x.shape[0]
        c = _check_float_matrix("c", c, self.label_dim, n)
        emb = self.embed(_per_sample("c_noise", c_noise, n, x.device), c, force_uncond, generator)
        h = self.conv_in(x.to(self.conv_in.weight.dtype))
        if self.channels_last or (self.channels_last is None and h.device.type == "cpu"
                                  and not torch.is_grad_enabled()):
            h = h.contiguous(memory_format=torch.channels_last)
        skips = [h]
        for layer in self.enc:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            if not isinstance(layer, AttentionBlock):
                skips.append(h)
            else:
                skips[-1] = h
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.dec:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(self.norm_out(h))

    def extra_repr(self):
        return (f"img_resolution={self.img_resolution}, img_channels={self.img_channels}, "
                f"label_dim={self.label_dim}, model_channels={self.model_channels}, "
                f"channel_mult={self.channel_mult}, num_blocks={self.num_blocks}, "
                f"attn_resolutions={self.attn_resolutions}, label_dropout={self.label_dropout}")


# -------------------------------------------------------------------------- EDM preconditioning

class EDMPrecond(nn.Module):
    """The EDM denoiser D(x; sigma, c) = c_skip x + c_out F(c_in x; c_noise, c) around a UNet F.

    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4, with sd = `sigma_data`, the
    standard deviation of the training images (0.5 for images spread over [-1, 1]).
    """

    def __init__(self, unet, sigma_data=0.5):
        super().__init__()
        self.unet = unet
        self.sigma_data = _check_real("sigma_data", sigma_data, 0.0, strict_minimum=True)

    @property
    def img_resolution(self):
        return self.unet.img_resolution

    @property
    def img_channels(self):
        return self.unet.img_channels

    @property
    def label_dim(self):
        return self.unet.label_dim

    def coefficients(self, sigma):
        """(c_skip, c_out, c_in, c_noise) for a tensor of noise levels, each of sigma's shape."""
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sigma ** 2 + sd ** 2).sqrt()
        return c_skip, c_out, c_in, sigma.log() / 4

    def forward(self, x, sigma, c, *, force_uncond=None, generator=None):
        """x (N, C, R, R), sigma a number or (N,) tensor (> 0), c (N, label_dim). Returns the
        denoised images in x's dtype."""
        x = _check_images("x", x, self.img_channels, self.img_resolution)
        sigma = _per_sample("sigma", sigma, x.shape[0], x.device)
        # A data-dependent check: eager only (torch.compile would have to break the graph on it).
        if not torch.compiler.is_compiling() and not bool((sigma > 0).all()):
            raise ValueError("sigma must be > 0 (the denoiser is not defined at sigma = 0)")
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma.reshape(-1, 1, 1, 1))
        f = self.unet(c_in * x.float(), c_noise.flatten(), c, force_uncond=force_uncond, generator=generator)
        return (c_skip * x.float() + c_out * f.float()).to(x.dtype)

    def extra_repr(self):
        return f"sigma_data={self.sigma_data}"


def edm_loss(denoiser, images, labels, *, generator=None, P_mean=-1.2, P_std=1.2, sigma_data=0.5):
    """Per-sample EDM loss, shape (N,): lambda(sigma) * mean over pixels of (D(y + n; sigma, c) - y)^2.

    sigma = exp(P_mean + P_std * z), z ~ N(0, 1), n ~ N(0, sigma^2 I), and
    lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 makes the expected loss of the untrained
    denoiser (F = 0) exactly 1 for data of standard deviation sd. Images are in [-1, 1]; the
    noise, the sigmas and the label-dropout mask all come from `generator` (else the global RNG).
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        raise TypeError("images must be a float tensor of shape (N, C, H, W)")
    _check_real("P_std", P_std, 0.0)
    _check_real("P_mean", P_mean)
    sd = _check_real("sigma_data", sigma_data, 0.0, strict_minimum=True)
    n = images.shape[0]
    sigma = (_randn((n, 1, 1, 1), generator, images.device) * P_std + P_mean).exp()
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    y = images.float()
    noisy = y + _randn(y.shape, generator, images.device) * sigma
    denoised = denoiser(noisy, sigma.flatten(), labels, generator=generator)
    return (weight * (denoised.float() - y).square()).mean(dim=(1, 2, 3))


# ---------------------------------------------------------------------------------------- sampler

def edm_sigma_steps(num_steps=18, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """The EDM schedule sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho,
    i = 0..n-1, followed by 0: float64 tensor of num_steps + 1 levels (one step: [smax, 0])."""
    num_steps = _check_int("num_steps", num_steps, 1)
    sigma_min = _check_real("sigma_min", sigma_min, 0.0, strict_minimum=True)
    sigma_max = _check_real("sigma_max", sigma_max, 0.0, strict_minimum=True)
    rho = _check_real("rho", rho, 0.0, strict_minimum=True)
    if sigma_max < sigma_min:
        raise ValueError(f"sigma_max ({sigma_max}) must be >= sigma_min ({sigma_min})")
    i = torch.arange(num_steps, dtype=torch.float64)
    frac = i / (num_steps - 1) if num_steps > 1 else i
    t = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def _initial_noise(seed, start, stop, shape):
    """(stop - start, *shape) standard normal latents for samples start..stop-1; sample i is
    drawn from its own generator seeded from (seed, i), so a sample's noise does not depend on
    the batch size or on the other samples."""
    g = torch.Generator()
    out = torch.empty((stop - start, *shape))
    for i in range(start, stop):
        state = np.random.SeedSequence((seed, i)).generate_state(2, dtype=np.uint32)
        g.manual_seed((int(state[0]) << 31) ^ int(state[1]))
        out[i - start] = torch.randn(shape, generator=g)
    return out


def _guided(denoiser, x, sigma, labels, guidance):
    """D_uncond + guidance (D_cond - D_uncond) in float64, in one forward where both are needed."""
    n = x.shape[0]
    x32 = x.float()
    if guidance == 1:
        return denoiser(x32, sigma, labels, force_uncond=False).double()
    if guidance == 0:
        return denoiser(x32, sigma, labels, force_uncond=True).double()
    mask = torch.arange(2 * n, device=x.device) >= n
    d = denoiser(torch.cat([x32, x32]), sigma, torch.cat([labels, labels]), force_uncond=mask).double()
    d_cond, d_uncond = d[:n], d[n:]
    return d_uncond + guidance * (d_cond - d_uncond)


def edm_heun_step(denoiser, x, sigma, sigma_next, labels, *, guidance=1.0):
    """One step of the probability-flow ODE dx/dsigma = (x - D(x; sigma, c)) / sigma from
    `sigma` to `sigma_next` (< sigma): Euler, corrected by Heun's second-order average unless
    sigma_next is 0. x is float64 (N, C, R, R) on the network's device; two network evaluations
    (one for the last step to 0). Called by `edm_sample`, which validates the arguments."""
    d_cur = (x - _guided(denoiser, x, sigma, labels, guidance)) / sigma
    x_next = x + (sigma_next - sigma) * d_cur
    if sigma_next > 0:
        d_next = (x_next - _guided(denoiser, x_next, sigma_next, labels, guidance)) / sigma_next
        x_next = x + (sigma_next - sigma) * (0.5 * d_cur + 0.5 * d_next)
    return x_next


def edm_sample(denoiser, labels, *, num_steps=18, guidance=1.0, seed=0, batch=256, sigma_min=0.002,
               sigma_max=80.0, rho=7.0, device=None, latents=None):
    """Images for float label rows by EDM's deterministic Heun sampler (2nd order, 2n-1
    network evaluations per image for n steps), as a CPU float32 tensor (N, C, R, R) in [-1, 1].

    denoiser: an `EDMPrecond` (or any module with `img_channels`, `img_resolution`, `label_dim`
    called as denoiser(x, sigma, c, force_uncond=mask)); it runs in eval mode and without
    gradients here, and its training flag is restored afterwards.
    labels: (N, label_dim) float rows, one-hot or soft (e.g. `genmix.ops.gemix_labels`).
    guidance: classifier-free guidance w, D = D_uncond + w (D_cond - D_uncond): 1 is plain
    conditional, 0 unconditional, > 1 pushes towards the label; w not in {0, 1} runs the
    conditional and the unconditional halves as one batch of twice the size.
    seed: sample i starts from noise seeded by (seed, i), so the same seed gives the same images
    on the same device and impl, whatever `batch` is. `latents` (N, C, R, R) standard normal
    noise replaces the seeded noise. batch: images per network call (halved with guidance).
    device: where the network runs (default: the device of the denoiser's parameters).
    """
    channels, resolution, label_dim = _denoiser_shape(denoiser)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor of shape (N, {label_dim}), got {type(labels).__name__}")
    if not labels.is_floating_point():
        raise TypeError(f"labels must be floating point (one-hot or soft rows), got dtype {labels.dtype}")
    if labels.ndim != 2 or labels.shape[1] != label_dim:
        raise ValueError(f"labels must have shape (N, {label_dim}) for this denoiser, got {tuple(labels.shape)}")
    if not bool(torch.isfinite(labels).all()):
        raise ValueError("labels must be finite")
    guidance = _check_real("guidance", guidance, 0.0)
    batch = _check_int("batch", batch, 1)
    seed = _check_int("seed", seed, 0)
    t_steps = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho)
    n = labels.shape[0]
    shape = (channels, resolution, resolution)
    if latents is not None:
        if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
            raise TypeError("latents must be a float tensor")
        if tuple(latents.shape) != (n, *shape):
            raise ValueError(f"latents must have shape {(n, *shape)}, got {tuple(latents.shape)}")
    return _heun_solve(denoiser, labels, t_steps, shape=shape, guidance=guidance, seed=seed, first_index=0,
                       batch=batch, device=device, latents=latents)


def _denoiser_shape(denoiser) -> tuple:
    """(channels, resolution, label_dim) of a denoiser, or a TypeError naming what it lacks."""
    for name in ("img_channels", "img_resolution", "label_dim"):
        if not hasattr(denoiser, name):
            raise TypeError(f"denoiser must have an attribute {name!r} (e.g. an EDMPrecond), got "
                            f"{type(denoiser).__name__}")
    return denoiser.img_channels, denoiser.img_resolution, denoiser.label_dim


def _heun_solve(denoiser, labels, steps, *, shape, guidance, seed, first_index, batch, device, latents=None,
                images=None):
    """The Heun sampler down `steps` (sigmas, float64, ending at 0) for every row of `labels`, in
    batches: row i starts from noise seeded by (seed, first_index + i) (or latents[i]) times
    steps[0], plus images[i] when given (an edit). Shared by `edm_sample` and `edm_edit`, whose
    arguments are validated; returns a CPU float32 tensor (N, *shape) clamped to [-1, 1]."""
    if device is None:
        param = next(iter(denoiser.parameters()), None) if isinstance(denoiser, nn.Module) else None
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    if guidance not in (0.0, 1.0):
        batch = max(1, batch // 2)
    n = labels.shape[0]
    was_training = denoiser.training if isinstance(denoiser, nn.Module) else None
    if was_training:
        denoiser.eval()
    out = torch.empty((n, *shape))
    try:
        with torch.no_grad():
            for start in range(0, n, batch):
                stop = min(n, start + batch)
                z = (latents[start:stop] if latents is not None
                     else _initial_noise(seed, first_index + start, first_index + stop, shape))
                c = labels[start:stop].to(device)
                x = z.to(device, torch.float64) * steps[0]
                if images is not None:
                    x = x + images[start:stop].to(device, torch.float64)
                for i in range(len(steps) - 1):
                    x = edm_heun_step(denoiser, x, float(steps[i]), float(steps[i + 1]), c, guidance=guidance)
                out[start:stop] = x.clamp(-1, 1).float().cpu()
    finally:
        if was_training:
            denoiser.train()
    return out


# ------------------------------------------------------------------------- real-guided sampling

def edm_strength_sigma(strength, *, sigma_min=0.002, sigma_max=80.0, rho=7.0) -> float:
    """The noise level a real image is raised to for an edit of strength s in [0, 1].

    s is a position on the sampler's own rho-schedule, counted from its quiet end:
    sigma(s) = (smin^(1/rho) + s (smax^(1/rho) - smin^(1/rho)))^rho for s > 0, so s = 1 is
    sigma_max (where sampling starts from noise alone) and s -> 0 tends to sigma_min; s = 0 is no
    noise at all (0.0). Because `edm_sigma_steps` spaces its steps evenly in this same variable,
    an edit of strength s re-runs about the last s-th of the sampler's steps. With the defaults
    (0.002, 80, 7): s = 0.25 -> 0.17, s = 0.5 -> 2.5, s = 0.75 -> 17.5. At 2.5, five times the
    data's standard deviation of 0.5, the noise averaged over a 5x5 patch falls to the data's
    spread: structure coarser than that stands out of the noise, finer detail is redrawn.
    """
    strength = _check_real("strength", strength, 0.0, 1.0)
    sigma_min = _check_real("sigma_min", sigma_min, 0.0, strict_minimum=True)
    sigma_max = _check_real("sigma_max", sigma_max, 0.0, strict_minimum=True)
    rho = _check_real("rho", rho, 0.0, strict_minimum=True)
    if sigma_max < sigma_min:
        raise ValueError(f"sigma_max ({sigma_max}) must be >= sigma_min ({sigma_min})")
    if strength == 0:
        return 0.0
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return float((lo + strength * (hi - lo)) ** rho)


def edm_edit(denoiser, images, labels, *, strength, num_steps=18, guidance=1.0, seed=0, first_index=0, batch=256,
             sigma_min=0.002, sigma_max=80.0, rho=7.0, device=None):
    """Real images noised to the level of `strength` and denoised towards `labels` by the Heun
    sampler (SDEdit, Meng et al. 2022, on EDM's deterministic sampler): a CPU float32 tensor
    (N, C, R, R) in [-1, 1].

    images: (N, C, R, R) float in [-1, 1] at the denoiser's resolution. labels: (N, label_dim)
    float rows, the label each image is denoised with: its own class for a variation of it, or
    another class (a soft row works too) to move it towards that class.

    strength s in [0, 1] (see `edm_strength_sigma`): the image becomes x = image + sigma(s) z and
    the sampler runs from sigma(s) down the steps of its usual `num_steps` schedule that lie below
    it, about s (num_steps - 1) + 1 Heun steps. s = 0 returns the images themselves (no noise,
    no step). s = 1 drops the image and starts from sigma_max z, i.e. it is exactly `edm_sample`
    with the same seed and labels (the image's share of x at sigma_max = 80 would be about 1/80
    of the noise's scale anyway), so the output depends on the label alone.

    seed, first_index: row i's noise z is the one `edm_sample` would draw for image
    first_index + i with this seed, so a set generated in pieces (each piece passing the index
    of its first row) gets the same noise as one generated at once; it is bit-identical when the
    pieces are cut at multiples of `batch` (the network's arithmetic may differ in the last
    bits between batch sizes). guidance, batch, sigma_*, rho, device: as for `edm_sample`.
    """
    channels, resolution, label_dim = _denoiser_shape(denoiser)
    images = _check_images("images", images, channels, resolution)
    n = images.shape[0]
    labels = _check_float_matrix("labels", labels, label_dim, n)
    if not bool(torch.isfinite(labels).all()):
        raise ValueError("labels must be finite")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images must be finite")
    strength = _check_real("strength", strength, 0.0, 1.0)
    guidance = _check_real("guidance", guidance, 0.0)
    batch = _check_int("batch", batch, 1)
    seed = _check_int("seed", seed, 0)
    first_index = _check_int("first_index", first_index, 0)
    t_steps = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho)
    if strength == 0:
        return images.detach().float().clamp(-1, 1).cpu().clone()
    if strength == 1:
        steps = t_steps
    else:
        sigma_start = edm_strength_sigma(strength, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
        steps = torch.cat([torch.tensor([sigma_start], dtype=torch.float64), t_steps[t_steps < sigma_start]])
    return _heun_solve(denoiser, labels, steps, shape=(channels, resolution, resolution), guidance=guidance,
                       seed=seed, first_index=first_index, batch=batch, device=device,
                       images=images if strength < 1 else None)
