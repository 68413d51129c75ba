"""modulated_conv2d: StyleGAN2's style-modulated, demodulated convolution with resampling.

w' = w * s (per sample, per input channel); with demodulate, w'' = w' / sqrt(sum w'^2 + 1e-8)
over (in, kh, kw); then a convolution that may upsample (transposed conv + FIR) or downsample
(FIR + strided conv), and optional additive noise.

The fused part is ours: one kernel computes every sample's modulated and demodulated weights
(and one computes their backward), instead of five elementwise passes over an N x O x I x K
tensor; the convolution itself goes through cuDNN / oneDNN (grouped, one group per sample).
Noise is added in place, and the non-fused path folds demodulation and noise into one
addcmul pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genmix.ops import _backend, _library
from genmix.ops._checks import CPU_DTYPES, check_float_tensor, check_same_device, dtype_reason, int_tuple
from genmix.ops.bias_act import ACTIVATIONS
from genmix.ops.bias_act import OP as _BIAS_ACT_OP
from genmix.ops.bias_act import bias_act as _bias_act_op
from genmix.ops.upfirdn2d import _filter_hw, upfirdn2d

OP = "modulated_conv2d"
DEMOD_EPS = 1e-8
WEIGHT_DTYPES = (torch.float32, torch.float64)


# ------------------------------------------------------------------------ weight modulation

def modulate_weights_ref(weight, styles, demodulate):
    """(N, O, I, kh, kw) modulated (and demodulated) weights, and d (N, O), in plain torch."""
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        d = (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt()
        w = w * d[:, :, None, None, None]
    else:
        d = torch.ones(w.shape[:2], dtype=w.dtype, device=w.device)
    return w, d


def demodulation_coefficients(weight, styles):
    """d (N, O) alone: sum_{i,k} (w s)^2 = (s^2) @ (sum_k w^2)^T, a small matrix product."""
    w_sq = weight.square().sum(dim=[2, 3])  # (O, I)
    return (styles.square() @ w_sq.t() + DEMOD_EPS).rsqrt()


def modulate_weights(weight, styles, demodulate, impl):
    """The fused kernels (torch.ops.genmix.modulate_weights, or its Triton twin): every sample's
    modulated and demodulated weights in one pass, and their backward in one more. A second
    derivative (path-length regularisation) differentiates the reference formulas instead
    (genmix/ops/_library.py)."""
    o, i, kh, kw = weight.shape
    w = weight.reshape(o, i, kh * kw).contiguous()
    out, d = _library.op("modulate_weights", impl)(w, styles.contiguous(), bool(demodulate), DEMOD_EPS)
    return out.reshape(styles.shape[0], o, i, kh, kw), d


# ------------------------------------------------------------------- convolution + resampling

def prefers_channels_last(impl, device) -> bool:
    """Whether activations should flow channels_last through layers built on these ops when
    they run with `impl` on `device`.

    True on CPU when the C++ kernels serve the call: oneDNN's convolutions skip their layout
    reorders there (their backward is up to 3x faster on StyleGAN2's small maps), and the C++
    upfirdn2d and bias_act vectorise across channels. The reference implementation keeps the
    layout it is given, so `impl="ref"` computes exactly what it always has.
    """
    device = torch.device(device)
    return (device.type == "cpu" and impl in ("auto", "cpp")
            and _backend.unavailable_reason("cpp", device) is None)


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d correlates; flip_weight=False flips the taps (a true convolution)."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


_POINTWISE_MATMUL_CHANNELS = 4


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True,
                    flip_filter=False, impl="auto"):
    """Convolution with StyleGAN2's resampling: upsampling as a stride-`up` transposed
    convolution followed by the FIR filter f (gain up^2), downsampling as f followed by a
    stride-`down` convolution, so no convolution ever runs on zero-inserted or discarded pixels.
    padding is the convolution's (x0, x1, y0, y1) padding, before the filter's own."""
    out_channels, in_per_group, kh, kw = w.shape
    fh, fw = _filter_hw(f) if f is not None else (1, 1)
    px0, px1, py0, py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2

    if up > 1:
        # Transposed convolution: weights laid out (in, out/groups) per group.
        w = (w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
             .reshape(groups * in_per_group, out_channels // groups, kh, kw))
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True,
                  flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2,
                      flip_filter=flip_filter, impl=impl)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
        return x
    if down > 1 and kh == 1 and kw == 1 and impl != "ref":
        # A 1x1 convolution commutes with subsampling: filter only the pixels the strided
        # convolution would keep (a quarter of them for down=2), then convolve those.
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter,
                      impl=impl)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if (kh == 1 and kw == 1 and groups == 1 and px0 == px1 == py0 == py1 == 0 and impl != "ref"
            and min(out_channels, in_per_group) <= _POINTWISE_MATMUL_CHANNELS
            and (x.shape[1] == 1 or x.is_contiguous(memory_format=torch.channels_last))):
        # A 1x1 convolution to or from a handful of channels (toRGB, fromRGB) as one matrix
        # product over channels-last pixels: oneDNN's convolution is 2-3x slower there.
        y = x.permute(0, 2, 3, 1).matmul(w.reshape(out_channels, in_per_group).t())
        return y.permute(0, 3, 1, 2)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1], impl=impl)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)


# -------------------------------------------------------------------------------- public op

def _check_args(x, weight, styles, noise, up, down, padding, resample_filter):
    """Validated (up, down, (x0, x1, y0, y1) padding) for one modulated convolution call."""
    check_float_tensor(OP, "x", x, 4)
    check_float_tensor(OP, "weight", weight, 4)
    check_float_tensor(OP, "styles", styles, 2)
    check_same_device(OP, "weight", weight, x)
    check_same_device(OP, "styles", styles, x)
    n, in_channels = x.shape[:2]
    if weight.shape[1] != in_channels:
        raise ValueError(f"{OP}: weight has {weight.shape[1]} input channels but x has {in_channels}")
    if styles.shape != (n, in_channels):
        raise ValueError(f"{OP}: styles must have shape ({n}, {in_channels}), got {tuple(styles.shape)}")
    up_f = int_tuple(OP, "up", up, (1,))[0]
    down_f = int_tuple(OP, "down", down, (1,))[0]
    if up_f < 1 or down_f < 1:
        raise ValueError(f"{OP}: up and down must be >= 1, got up={up}, down={down}")
    pad = int_tuple(OP, "padding", padding, (1, 2, 4))
    pad = pad * 4 if len(pad) == 1 else (pad[0], pad[0], pad[1], pad[1]) if len(pad) == 2 else pad
    if (up_f > 1 or down_f > 1) and resample_filter is None:
        raise ValueError(f"{OP}: up/down resampling needs a resample_filter (e.g. setup_filter([1, 3, 3, 1]))")
    if resample_filter is not None:
        check_float_tensor(OP, "resample_filter", resample_filter, (1, 2))
        check_same_device(OP, "resample_filter", resample_filter, x)
    if noise is not None:
        check_float_tensor(OP, "noise", noise)
        check_same_device(OP, "noise", noise, x)
    return up_f, down_f, pad


def _select(impl, x, weight, styles):
    def unsupported(name):
        if name == "ref":
            return None
        return dtype_reason(weight, WEIGHT_DTYPES) or dtype_reason(styles, WEIGHT_DTYPES)

    return _backend.select_impl(OP, impl, x.device, unsupported)


def _convolve(x, weight, styles, up, down, pad, resample_filter, demodulate, flip_weight,
              fused_modconv, chosen):
    """The convolution output y and the demodulation coefficients d (N, O) still to be applied
    to it (None when there are none, or when the weights already carry them)."""
    n, in_channels = x.shape[:2]
    # Keep upfirdn2d on the same family of implementations (ref stays pure PyTorch).
    resample_impl = "ref" if chosen == "ref" else "auto"
    out_channels, _, kh, kw = weight.shape
    styles = styles.to(weight.dtype)
    resample = dict(f=resample_filter, up=up, down=down, padding=pad, flip_weight=flip_weight,
                    impl=resample_impl)

    if not fused_modconv:
        d = demodulation_coefficients(weight, styles) if demodulate else None
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        return conv2d_resample(x, weight.to(x.dtype), **resample), d

    if chosen == "ref":
        w, _ = modulate_weights_ref(weight, styles, demodulate)
    else:
        w, _ = modulate_weights(weight, styles, demodulate, chosen)
    w = w.reshape(n * out_channels, in_channels, kh, kw).to(x.dtype)
    y = conv2d_resample(x.reshape(1, n * in_channels, *x.shape[2:]), w, groups=n, **resample)
    return y.reshape(n, out_channels, *y.shape[2:]), None


def _demodulate_and_add_noise(y, d, noise):
    n = y.shape[0]
    if d is not None and noise is not None:
        return torch.addcmul(noise.to(y.dtype), y, d.to(y.dtype).reshape(n, -1, 1, 1))
    if d is not None:
        return y * d.to(y.dtype).reshape(n, -1, 1, 1)
    return y if noise is None else y.add_(noise.to(y.dtype))


def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True, impl="auto"):
    """StyleGAN2 modulated convolution. x (N, I, H, W), weight (O, I, kh, kw), styles (N, I),
    noise broadcastable to the output or None. up/down: resampling factors (with
    resample_filter, e.g. setup_filter([1, 3, 3, 1])); padding: int, (x, y) or (x0, x1, y0, y1).
    fused_modconv=True convolves each sample with its own weights (one grouped convolution);
    False scales the activations instead: same result, better for large batches of small maps.
    """
    up_f, down_f, pad = _check_args(x, weight, styles, noise, up, down, padding, resample_filter)
    chosen = _select(impl, x, weight, styles)
    y, d = _convolve(x, weight, styles, up_f, down_f, pad, resample_filter, demodulate, flip_weight,
                     fused_modconv, chosen)
    return _demodulate_and_add_noise(y, d, noise)


# ------------------------------------------------------------ modulated convolution + bias_act

def _epilogue_noise(noise, y):
    """noise as the (N or 1, 1, H or 1, W or 1) view the fused epilogue reads, or None when its
    broadcast is one the kernel does not take (then the unfused ops run)."""
    if noise.ndim > 4:
        return None
    view = noise.reshape((1,) * (4 - noise.ndim) + tuple(noise.shape))
    for size, full in zip(view.shape, (y.shape[0], 1, y.shape[2], y.shape[3])):
        if size not in (1, full):
            return None
    return view.to(y.dtype)


def modulated_conv2d_bias_act(x, weight, styles, noise=None, bias=None, act="linear", alpha=None,
                              gain=None, clamp=None, up=1, down=1, padding=0, resample_filter=None,
                              demodulate=True, flip_weight=True, fused_modconv=True, impl="auto"):
    """`bias_act(modulated_conv2d(x, weight, styles, noise, ...), bias, act=act, alpha=alpha,
    gain=gain, clamp=clamp)`, the whole tail of a StyleGAN2 synthesis layer.

    Same arguments and result as those two calls (which `impl="ref"` makes, unchanged). With the
    C++ backend, everything after the convolution (demodulation, noise, bias, activation, gain,
    clamp) is one pass over its output instead of two, and the backward is one pass that also
    reduces the gradients of the demodulation coefficients, the noise and the bias, instead of
    five passes and as many autograd nodes.
    """
    up_f, down_f, pad = _check_args(x, weight, styles, noise, up, down, padding, resample_filter)
    act_spec = ACTIVATIONS.get(act)
    fusable = (act_spec is not None and impl in ("auto", "cpp") and x.device.type == "cpu"
               and x.dtype in CPU_DTYPES and (noise is None or noise.ndim <= 4)
               and (bias is None or (isinstance(bias, torch.Tensor) and bias.ndim == 1
                                     and bias.shape[0] == weight.shape[0] and bias.device == x.device)))
    if not fusable:
        y = modulated_conv2d(x, weight, styles, noise=noise, up=up_f, down=down_f, padding=pad,
                             resample_filter=resample_filter, demodulate=demodulate,
                             flip_weight=flip_weight, fused_modconv=fused_modconv, impl=impl)
        return _bias_act_op(y, None if bias is None else bias.to(y.dtype), act=act, alpha=alpha,
                            gain=gain, clamp=clamp, impl=impl)

    chosen = _select(impl, x, weight, styles)  # counted once, whichever way it continues
    y, d = _convolve(x, weight, styles, up_f, down_f, pad, resample_filter, demodulate, flip_weight,
                     fused_modconv, chosen)
    noise_view = None if noise is None else _epilogue_noise(noise, y)
    if chosen != "cpp" or (noise is not None and noise_view is None):
        y = _demodulate_and_add_noise(y, d, noise)
        return _bias_act_op(y, None if bias is None else bias.to(y.dtype), act=act, alpha=alpha,
                            gain=gain, clamp=clamp, impl=impl)

    alpha = float(act_spec.default_alpha if alpha is None else alpha)
    gain = float(act_spec.default_gain if gain is None else gain)
    if clamp is not None:
        clamp = float(clamp)
        if not clamp >= 0:
            raise ValueError(f"bias_act: clamp must be >= 0 or None, got {clamp}")
    # The activation runs in the C++ kernel: count it as bias_act's, as the unfused path would.
    _backend.select_impl(_BIAS_ACT_OP, impl, x.device, lambda name: None)
    if not (y.is_contiguous() or y.is_contiguous(memory_format=torch.channels_last)):
        y = y.contiguous()
    d = None if d is None else d.to(y.dtype)
    b = None if bias is None else bias.to(y.dtype)
    # One operator (torch.ops.genmix.modconv_epilogue): the forward and its backward are one pass
    # each; a second derivative differentiates the equivalent unfused ops.
    return torch.ops.genmix.modconv_epilogue(y, d, noise_view, b, act_spec.code, alpha, gain,
                                             -1.0 if clamp is None else clamp)
