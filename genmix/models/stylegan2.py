"""Class-conditional StyleGAN2 generator and discriminator built on `genmix.ops`.

Labels `c` are float matrices (N, c_dim): one-hot rows for plain classes, any other rows (e.g.
mixing weights) for soft labels. Every layer stores trainable weights at unit variance and scales
them at run time ("equalized learning rate"), so that Adam's per-parameter step size translates
into the same relative change for every layer regardless of its fan-in.

Each module takes `impl` ("auto", "cpp", "triton", "cuda" or "ref") and passes it to every op it
calls; `set_impl(module, impl)` switches a whole network afterwards, e.g. to check the fused
kernels against the pure-PyTorch reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from genmix.models._checks import NOISE_MODES
from genmix.models._checks import check_float_matrix as _check_float_matrix
from genmix.models._checks import check_resolution as _check_resolution
from genmix.ops import bias_act, setup_filter, upfirdn2d
from genmix.ops.bias_act import ACTIVATIONS, fully_connected
from genmix.ops.modulated_conv2d import conv2d_resample, modulated_conv2d_bias_act, prefers_channels_last

__all__ = [
    "Conv2dLayer",
    "Discriminator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "FullyConnectedLayer",
    "Generator",
    "MappingNetwork",
    "MinibatchStdLayer",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "normalize_2nd_moment",
    "set_impl",
]

DEFAULT_RESAMPLE_FILTER = (1, 3, 3, 1)


def set_impl(module: nn.Module, impl: str) -> nn.Module:
    """Make every submodule of `module` call the ops with `impl`; returns `module`."""
    for m in module.modules():
        if hasattr(m, "impl"):
            m.impl = impl
    return module


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square, so the latent's and the label embedding's magnitudes
    do not depend on their widths (or on how peaked a soft label is)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# fp16 blocks run in half precision only on GPUs: CPU half-precision convolutions are slow and
# gain nothing. Tests flip this to exercise the fp16 path on CPU.
FP16_ON_CPU = False


def compute_dtype(use_fp16: bool, device: torch.device) -> torch.dtype:
    """float16 for blocks marked fp16 on a GPU, float32 otherwise."""
    if use_fp16 and (device.type == "cuda" or FP16_ON_CPU):
        return torch.float16
    return torch.float32


def fp16_threshold(img_resolution: int, num_fp16_res: int, conv_clamp) -> float:
    """Lowest resolution that runs in fp16 (the `num_fp16_res` highest ones do).

    fp16 activations overflow without clamping, so fp16 requires conv_clamp.
    """
    if num_fp16_res < 0:
        raise ValueError(f"num_fp16_res must be >= 0, got {num_fp16_res}")
    if num_fp16_res == 0:
        return math.inf
    if conv_clamp is None:
        raise ValueError("num_fp16_res > 0 needs conv_clamp (e.g. 256) to keep fp16 activations finite")
    return max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)


def _channels(channel_base: int, channel_max: int, resolution: int) -> int:
    # Fewer channels at higher resolutions keeps the cost per block roughly constant.
    return max(1, min(channel_base // resolution, channel_max))


# --------------------------------------------------------------------------------- basic layers

class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate followed by `bias_act`.

    `lr_multiplier` < 1 slows the layer down: the stored parameters are divided by it at
    initialisation and multiplied back at run time, so the same optimizer step moves the
    effective weights by `lr_multiplier` times as much.
    """

    def __init__(self, in_features, out_features, bias=True, lr_multiplier=1.0, activation="linear",
                 bias_init=0.0, impl="auto"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.activation = activation
        self.impl = impl
        self.weight = nn.Parameter(torch.randn(self.out_features, self.in_features) / lr_multiplier)
        self.bias = (nn.Parameter(torch.full([self.out_features], float(bias_init) / lr_multiplier))
                     if bias else None)
        self.weight_gain = lr_multiplier / math.sqrt(self.in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        # bias_act(x @ (weight * weight_gain).T, bias * bias_gain), one autograd node with the
        # C++ kernels (impl="ref" makes exactly those separate calls).
        return fully_connected(x, self.weight, self.bias, self.weight_gain, self.bias_gain,
                               act=self.activation, impl=self.impl)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Plain convolution with equalized learning rate, optional FIR resampling and `bias_act`."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear", up=1,
                 down=1, resample_filter=DEFAULT_RESAMPLE_FILTER, conv_clamp=None, impl="auto"):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.impl = impl
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = ACTIVATIONS[activation].default_gain

    def forward(self, x, gain=1.0):
        w = self.weight.to(x.dtype) * self.weight_gain
        resampling = self.up > 1 or self.down > 1
        # With upsampling the convolution runs transposed; not flipping keeps the taps aligned
        # the same way as the plain correlation.
        x = conv2d_resample(x, w, f=self.resample_filter if resampling else None, up=self.up,
                            down=self.down, padding=[self.padding] * 4, flip_weight=self.up == 1,
                            impl=self.impl)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        b = None if self.bias is None else self.bias.to(x.dtype)
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp, impl=self.impl)


# ------------------------------------------------------------------------------ mapping network

class MappingNetwork(nn.Module):
    """Maps a latent z and a float label c to intermediate latents w.

    Returns (N, num_ws, w_dim), or (N, w_dim) when num_ws is None (the discriminator uses that
    form, with z_dim=0, to embed labels). `w_avg` tracks the running mean of w during training;
    it is the centre that truncation pulls towards.
    """

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None,
                 layer_features=None, activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995,
                 impl="auto"):
        super().__init__()
        if z_dim < 0 or c_dim < 0 or z_dim + c_dim == 0:
            raise ValueError(f"z_dim and c_dim must be >= 0 and not both 0, got z_dim={z_dim}, c_dim={c_dim}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.impl = impl
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        # The embedding learns at the full rate: it is a linear lookup, not part of the deep MLP
        # whose instability the small lr_multiplier guards against.
        self.embed = FullyConnectedLayer(c_dim, embed_features, impl=impl) if c_dim > 0 else None
        self.layers = nn.ModuleList(
            FullyConnectedLayer(features[i], features[i + 1], activation=activation,
                                lr_multiplier=lr_multiplier, impl=impl)
            for i in range(num_layers))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))
            # One running mean per class: truncating a conditional model towards the global mean
            # would pull every sample towards the majority class; towards its own class's mean
            # it keeps the class while trading variety for fidelity.
            self.register_buffer("w_avg_class", torch.zeros(max(c_dim, 1), w_dim))
        else:
            self.w_avg = None
            self.w_avg_class = None

    def forward(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=True,
                truncation_center="class"):
        if truncation_center not in ("class", "global"):
            raise ValueError(f"truncation_center must be 'class' or 'global', got {truncation_center!r}")
        batch = None
        parts = []
        if self.z_dim > 0:
            z = _check_float_matrix("z", z, self.z_dim)
            batch = z.shape[0]
            parts.append(normalize_2nd_moment(z))
        if self.c_dim > 0:
            c = _check_float_matrix("c", c, self.c_dim, batch)
            parts.append(normalize_2nd_moment(self.embed(c.to(self.embed.weight.dtype))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for layer in self.layers:
            x = layer(x)

        if self.w_avg is not None and self.training and update_w_avg:
            w = x.detach().float()
            self.w_avg.copy_(w.mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
            if self.c_dim > 0:
                # Label-weighted mean per class; classes absent from the batch keep their value.
                weights = c.detach().float().clamp_min(0)
                mass = weights.sum(dim=0)
                seen = mass > 0
                class_mean = (weights.t() @ w) / mass.clamp_min(1e-8).unsqueeze(1)
                updated = class_mean.lerp(self.w_avg_class, self.w_avg_beta)
                self.w_avg_class.copy_(torch.where(seen.unsqueeze(1), updated, self.w_avg_class))

        if self.num_ws is None:
            if truncation_psi != 1:
                raise ValueError("truncation needs num_ws and a tracked w_avg")
            return x
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            if self.w_avg is None:
                raise ValueError("truncation needs w_avg; construct with w_avg_beta set")
            cutoff = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            center = self.w_avg.to(x.dtype).expand(x.shape[0], 1, self.w_dim)
            if truncation_center == "class" and self.c_dim > 0:
                # Soft labels truncate towards the same blend of class centres as their label.
                weights = c.to(x.dtype).clamp_min(0)
                weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-8)
                center = (weights @ self.w_avg_class.to(x.dtype)).unsqueeze(1)
            truncated = center.lerp(x[:, :cutoff], truncation_psi)
            x = torch.cat([truncated, x[:, cutoff:]], dim=1)
        return x

    def extra_repr(self):
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


# ---------------------------------------------------------------------------- synthesis network

class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (style from an affine map of w), per-pixel noise and lrelu."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1,
                 use_noise=True, activation="lrelu", resample_filter=DEFAULT_RESAMPLE_FILTER,
                 conv_clamp=None, impl="auto"):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.impl = impl
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].default_gain
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        # bias_init=1: styles start around 1, so modulation is close to the identity at first.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1, impl=impl)
        # No runtime weight gain: demodulation renormalises each output channel anyway.
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            # Starts at 0 so noise only enters once the network has learned to use it.
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1.0):
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        if x.ndim != 4 or x.shape[2:] != (in_resolution, in_resolution):
            raise ValueError(f"x must be (N, C, {in_resolution}, {in_resolution}), got {tuple(x.shape)}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                dtype=x.dtype) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const.to(x.dtype) * self.noise_strength
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        # modulated_conv2d then bias_act; with the C++ kernels the tail after the convolution
        # runs as one pass (impl="ref" makes exactly the two separate calls).
        return modulated_conv2d_bias_act(
            x, self.weight, styles, noise=noise, bias=self.bias.to(x.dtype), act=self.activation,
            gain=self.act_gain * gain, clamp=clamp, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter if self.up > 1 else None, flip_weight=self.up == 1,
            fused_modconv=fused_modconv, impl=self.impl)


class ToRGBLayer(nn.Module):
    """1x1 modulated convolution to image channels, without demodulation: the output's scale is
    meant to follow the style, and there is no nonlinearity after it to protect."""

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, impl="auto"):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.impl = impl
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1, impl=impl)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Without demodulation the equalized-lr gain must be applied explicitly; folding it into
        # the styles is cheaper than scaling the weight per sample.
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d_bias_act(x, self.weight, styles, bias=self.bias.to(x.dtype),
                                         clamp=self.conv_clamp, demodulate=False,
                                         fused_modconv=fused_modconv, impl=self.impl)


class SynthesisBlock(nn.Module):
    """One resolution of the skip-architecture generator: (upsampling) conv, conv, toRGB, with the
    running image upsampled and added to, so every resolution contributes directly to the output."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last,
                 resample_filter=DEFAULT_RESAMPLE_FILTER, conv_clamp=None, use_noise=True,
                 use_fp16=False, impl="auto"):
        super().__init__()
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.impl = impl
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        layer_kwargs = dict(resample_filter=resample_filter, conv_clamp=conv_clamp,
                            use_noise=use_noise, impl=impl)
        self.num_conv = 0
        if in_channels == 0:
            # Learned constant input: all variation comes from styles and noise.
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, impl=impl)
        self.num_torgb = 1

    def forward(self, x, img, ws, noise_mode="random", fused_modconv=None):
        if ws.ndim != 3 or ws.shape[1] != self.num_conv + self.num_torgb:
            raise ValueError(f"ws must be (N, {self.num_conv + self.num_torgb}, w_dim), got {tuple(ws.shape)}")
        if fused_modconv is None:
            # One grouped convolution per batch is fastest for inference; scaling activations
            # instead is faster for training's larger batches and its backward pass.
            fused_modconv = not self.training
        dtype = compute_dtype(self.use_fp16, ws.device)
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            if prefers_channels_last(self.impl, x.device):
                x = x.contiguous(memory_format=torch.channels_last)  # every later layer keeps it
        else:
            x = self.conv0(x.to(dtype), next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)

        if img is not None:
            # 2x upsampling with the 4-tap filter: zero insertion, padding (2, 1) per axis so the
            # output stays aligned, and gain 4 to restore the energy lost to the inserted zeros.
            img = upfirdn2d(img, self.resample_filter, up=2, padding=[2, 1, 2, 1], gain=4, impl=self.impl)
        # The running image stays float32: it accumulates every resolution's contribution.
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).float()
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """Maps ws (N, num_ws, w_dim) to images (N, img_channels, img_resolution, img_resolution)."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512,
                 conv_clamp=None, use_noise=True, resample_filter=DEFAULT_RESAMPLE_FILTER,
                 num_fp16_res=0, impl="auto"):
        super().__init__()
        _check_resolution("img_resolution", img_resolution, 8)
        fp16_resolution = fp16_threshold(img_resolution, num_fp16_res, conv_clamp)
        if img_channels < 1:
            raise ValueError(f"img_channels must be >= 1, got {img_channels}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.impl = impl
        self.block_resolutions = [2 ** i for i in range(2, int(np.log2(img_resolution)) + 1)]
        channels = {r: _channels(channel_base, channel_max, r) for r in self.block_resolutions}
        self.num_ws = 0
        self.blocks = nn.ModuleList()
        for r in self.block_resolutions:
            block = SynthesisBlock(channels[r // 2] if r > 4 else 0, channels[r], w_dim, r, img_channels,
                                   is_last=r == img_resolution, resample_filter=resample_filter,
                                   conv_clamp=conv_clamp, use_noise=use_noise,
                                   use_fp16=r >= fp16_resolution, impl=impl)
            # A block's toRGB shares its w with the next block's first conv, so only the last
            # toRGB needs a w of its own.
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)
            self.blocks.append(block)

    def forward(self, ws, noise_mode="random", fused_modconv=None):
        if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            shape = tuple(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
            raise ValueError(f"ws must have shape (N, {self.num_ws}, {self.w_dim}), got {shape}")
        x = img = None
        w_idx = 0
        for block in self.blocks:
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        # Callers get the usual contiguous NCHW image whatever layout the blocks ran in.
        return img.contiguous()


class Generator(nn.Module):
    """Class-conditional StyleGAN2 generator: forward(z, c) -> (N, img_channels, R, R)."""

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None,
                 synthesis_kwargs=None, impl="auto"):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, impl=impl,
                                          **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, impl=impl, **(mapping_kwargs or {}))

    def forward(self, z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode="random",
                fused_modconv=None, update_w_avg=True, truncation_center="class"):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_w_avg=update_w_avg, truncation_center=truncation_center)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)


# -------------------------------------------------------------------------------- discriminator

class DiscriminatorBlock(nn.Module):
    """Residual block: (fromRGB), conv 3x3, conv 3x3 with 2x downsampling, plus a 1x1
    downsampling skip. Both branches are scaled by sqrt(0.5) so their sum keeps unit variance."""

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels,
                 activation="lrelu", resample_filter=DEFAULT_RESAMPLE_FILTER, conv_clamp=None,
                 use_fp16=False, impl="auto"):
        super().__init__()
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.impl = impl
        kwargs = dict(resample_filter=resample_filter, conv_clamp=conv_clamp, impl=impl)
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation=activation, **kwargs)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation=activation, **kwargs)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation=activation, down=2, **kwargs)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, **kwargs)

    def forward(self, x, img):
        dtype = compute_dtype(self.use_fp16, img.device)
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype))
        x = x.to(dtype)
        gain = math.sqrt(0.5)
        y = self.skip(x, gain=gain)
        x = self.conv1(self.conv0(x), gain=gain)
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the standard deviation of features across small groups of samples, letting the
    discriminator see batch statistics and so penalise a generator that lacks variety."""

    def __init__(self, group_size=4, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        if c % self.num_channels:
            raise ValueError(f"channels ({c}) must be divisible by mbstd num_channels ({self.num_channels})")
        # Largest group size <= group_size that divides the batch, so any batch size works
        # (a batch of 1 degrades to a zero stddev feature rather than an error).
        g = max(d for d in range(1, min(self.group_size or n, n) + 1) if n % d == 0)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev, conv, fc, output; with projection conditioning when
    cmap_dim > 0 (the score is the scaled dot product of features and the label embedding)."""

    def __init__(self, in_channels, cmap_dim, resolution=4, mbstd_group_size=4, mbstd_num_channels=1,
                 activation="lrelu", conv_clamp=None, impl="auto"):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.impl = impl
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation=activation,
                                conv_clamp=conv_clamp, impl=impl)
        self.fc = FullyConnectedLayer(in_channels * resolution * resolution, in_channels,
                                      activation=activation, impl=impl)
        self.out = FullyConnectedLayer(in_channels, cmap_dim if cmap_dim > 0 else 1, impl=impl)

    def forward(self, x, cmap):
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.out(self.fc(x.flatten(1)))
        if self.cmap_dim > 0:
            # 1/sqrt(cmap_dim) keeps the score's scale independent of the embedding width.
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """Class-conditional residual StyleGAN2 discriminator: forward(img, c) -> (N, 1) scores."""

    def __init__(self, c_dim, img_resolution, img_channels, channel_base=32768, channel_max=512,
                 mbstd_group_size=4, mbstd_num_channels=1, cmap_dim=None, conv_clamp=None,
                 mapping_kwargs=None, num_fp16_res=0, impl="auto"):
        super().__init__()
        _check_resolution("img_resolution", img_resolution, 8)
        if img_channels < 1:
            raise ValueError(f"img_channels must be >= 1, got {img_channels}")
        if c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {c_dim}")
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.impl = impl
        self.block_resolutions = [2 ** i for i in range(int(np.log2(img_resolution)), 2, -1)]
        channels = {r: _channels(channel_base, channel_max, r) for r in self.block_resolutions + [4]}
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim
        fp16_resolution = fp16_threshold(img_resolution, num_fp16_res, conv_clamp)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(channels[r] if r < img_resolution else 0, channels[r], channels[r // 2], r,
                               img_channels, conv_clamp=conv_clamp, use_fp16=r >= fp16_resolution,
                               impl=impl)
            for r in self.block_resolutions)
        self.mapping = (MappingNetwork(0, c_dim, cmap_dim, num_ws=None, w_avg_beta=None, impl=impl,
                                       **(mapping_kwargs or {})) if c_dim > 0 else None)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim, mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp, impl=impl)

    def forward(self, img, c):
        r, ch = self.img_resolution, self.img_channels
        if (not isinstance(img, torch.Tensor) or not img.is_floating_point() or img.ndim != 4
                or img.shape[1:] != (ch, r, r)):
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f"img must be a float tensor of shape (N, {ch}, {r}, {r}), got {shape}")
        cmap = None
        if self.c_dim > 0:
            _check_float_matrix("c", c, self.c_dim, img.shape[0])
            cmap = self.mapping(None, c)
        x = None
        if prefers_channels_last(self.impl, img.device):
            # `to` rather than `contiguous`: with one channel both layouts are contiguous, and
            # only explicit channels-last strides make the convolutions pick that layout.
            img = img.to(memory_format=torch.channels_last)
        for block in self.blocks:
            x = block(x, img)
        return self.b4(x.float(), cmap)
