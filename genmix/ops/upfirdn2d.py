"""upfirdn2d: upsample (zero insertion), pad, FIR filter, downsample, in one pass.

The resampling primitive of StyleGAN2: every up/down-sampling in the generator and the
discriminator goes through it, so it is one of the hottest ops of GAN training. Same arguments
and conventions as the StyleGAN2-ADA op users know (NCHW; up/down/padding per axis as
(x, y) and (x0, x1, y0, y1); negative padding crops).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genmix.ops import _backend, _library
from genmix.ops._checks import (
    CPU_DTYPES,
    GPU_DTYPES,
    check_float_tensor,
    check_same_device,
    dtype_reason,
    int_tuple,
)

OP = "upfirdn2d"


def setup_filter(f, normalize=True, flip_filter=False, gain=1, separable=None, *, device=None):
    """Turn a list/array/tensor of taps into a float32 filter tensor for upfirdn2d.

    A 1-D filter of 8 or more taps stays 1-D (applied separably, cheaper); shorter ones become
    their 2-D outer product unless `separable` says otherwise. `normalize` makes the taps sum
    to 1 so resampling preserves the mean; `gain` is folded into the taps.
    """
    if f is None:
        f = 1
    # Taps are checked and shaped on the CPU (a handful of numbers; checking them on a GPU would
    # be a device sync, on "meta" impossible), then moved to `device`.
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.device.type == "meta":
        raise ValueError("setup_filter: f must hold values (it is a meta tensor); pass device='meta' instead")
    if device is None:
        device = f.device
    f = f.cpu()
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2):
        raise ValueError(f"setup_filter: f must be a scalar, 1-D or 2-D, got shape {tuple(f.shape)}")
    if f.numel() == 0:
        raise ValueError("setup_filter: f must not be empty")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if separable and f.ndim != 1:
        raise ValueError("setup_filter: separable=True needs a 1-D filter")
    if normalize:
        total = f.sum()
        if total == 0:
            raise ValueError("setup_filter: cannot normalize a filter whose taps sum to 0")
        f = f / total
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1 and gain < 0:
        raise ValueError("setup_filter: a separable filter is applied twice, so it cannot carry a "
                         "negative gain; pass the gain to upfirdn2d instead")
    return (f * (gain ** (f.ndim / 2))).to(device)


def _parse_resampling(up, down, padding):
    upx, upy = _pair("up", up)
    downx, downy = _pair("down", down)
    pad = int_tuple(OP, "padding", padding, (1, 2, 4))
    if len(pad) == 1:
        pad = (pad[0],) * 4
    elif len(pad) == 2:
        pad = (pad[0], pad[0], pad[1], pad[1])
    return (upx, upy), (downx, downy), pad


def _pair(name, value):
    v = int_tuple(OP, name, value, (1, 2))
    if len(v) == 1:
        v = (v[0], v[0])
    for item in v:
        if item < 1:
            raise ValueError(f"{OP}: {name} must be >= 1, got {value!r}")
    return v


def _filter_hw(f: torch.Tensor):
    return (f.shape[0], f.shape[1]) if f.ndim == 2 else (f.shape[0], f.shape[0])


def _out_size(in_size, up, pad0, pad1, taps, down):
    return (in_size * up + pad0 + pad1 - taps) // down + 1


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Upsample by zero insertion, pad (negative crops), FIR-filter with `f`, downsample.

    x: (N, C, H, W). f: 2-D filter, 1-D separable filter (applied on both axes), or None
    (identity). up/down: int or (x, y). padding: int, (x, y) or (x0, x1, y0, y1).
    The output has the memory format of x. Differentiable; its backward is upfirdn2d again
    with up and down swapped, so it is differentiable to any order.
    """
    check_float_tensor(OP, "x", x, 4)
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    check_float_tensor(OP, "f", f, (1, 2))
    check_same_device(OP, "f", f, x)
    if f.numel() == 0:
        raise ValueError(f"{OP}: filter f must not be empty")
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = _parse_resampling(up, down, padding)
    if isinstance(gain, torch.Tensor) or not isinstance(gain, (int, float)):
        raise TypeError(f"{OP}: gain must be a number, got {type(gain).__name__}")
    fh, fw = _filter_hw(f)
    out_h = _out_size(x.shape[2], upy, py0, py1, fh, downy)
    out_w = _out_size(x.shape[3], upx, px0, px1, fw, downx)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{OP}: output would be empty ({out_h}x{out_w}) for input {tuple(x.shape[2:])}, "
            f"filter {fh}x{fw}, up={(upx, upy)}, down={(downx, downy)}, padding={(px0, px1, py0, py1)}"
        )

    def unsupported(name):
        if name == "ref":
            return None
        if f.requires_grad:
            return "the filter requires grad; only impl='ref' differentiates with respect to f"
        return dtype_reason(x, CPU_DTYPES if name == "cpp" else GPU_DTYPES)

    chosen = _backend.select_impl(OP, impl, x.device, unsupported)
    if chosen == "ref":
        return upfirdn2d_ref(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain)

    kernel_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    f = f.detach().to(kernel_dtype)
    # One operator serves cpp and cuda (torch.ops.genmix.upfirdn2d, per dispatch key); triton
    # has its own. Autograd is registered on both (genmix/ops/_library.py): the backward is the
    # same operator with the adjoint's parameters, so any order of derivative works.
    run = _library.op("upfirdn2d", chosen)
    if f.ndim == 2:
        return run(x, f.contiguous(), [upx, upy, downx, downy, px0, px1, py0, py1],
                   bool(flip_filter), float(gain))
    # Separable: a horizontal pass carrying the gain, then a vertical one.
    x = run(x, f[None, :].contiguous(), [upx, 1, downx, 1, px0, px1, 0, 0], bool(flip_filter), float(gain))
    return run(x, f[:, None].contiguous(), [1, upy, 1, downy, 0, 0, py0, py1], bool(flip_filter), 1.0)


def upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    """Pure-PyTorch definition of upfirdn2d (all other implementations are tested against it).

    up/down are (x, y) pairs and padding is (x0, x1, y0, y1), already parsed.
    """
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
    n, c, h, w = x.shape
    # Zero insertion: each sample followed by up-1 zeros along each axis.
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)
    # Positive padding grows, negative padding crops.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # conv2d correlates; flipping the taps makes it a true convolution unless flip_filter.
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, (f * gain)[None, None].expand(c, 1, *f.shape), groups=c)
    else:  # separable: horizontal pass (carrying the gain), then vertical
        x = F.conv2d(x, (f * gain)[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)
    return x[:, :, ::downy, ::downx]
