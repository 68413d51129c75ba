"""The fused kernels as torch.library operators: `torch.ops.genmix.*`.

The C++/CUDA operators are defined in the compiled extension (csrc/bindings.cpp: schemas and
per-device kernels); the Triton ones here, through `torch.library.triton_op`, under the same
schemas with a `_triton` suffix. This module registers, once for both families:

- a fake (shape-only) implementation per operator, so fake tensors, `torch.compile` and
  `torch.library.opcheck` work without running a kernel;
- autograd, as backward formulas written with these same operators, so a backward is itself
  differentiable where the math allows (R1 and path-length regularisation need second
  derivatives) and nothing depends on torch's autograd internals.

Importing this module loads the extension and the Triton kernels where they can be had; what
could not be loaded is left to the dispatcher (`_backend`), which says why and falls back.
"""

from __future__ import annotations

import importlib
import typing
from typing import Optional

import torch

# ---------------------------------------------------------------------------- loading

_state: dict = {"extension": None, "extension_error": None, "triton": False, "triton_error": None}

NAMES = ("upfirdn2d", "bias_act", "bias_act_grad", "bias_act_grad2", "sample_dirichlet", "mix_batch",
         "modulate_weights", "modulate_weights_backward", "modconv_epilogue", "modconv_epilogue_backward",
         "fully_connected")
TRITON_NAMES = ("upfirdn2d", "bias_act", "bias_act_grad", "bias_act_grad2", "sample_dirichlet", "mix_batch",
                "modulate_weights", "modulate_weights_backward")
MIX_OUT_DTYPES = {0: torch.float16, 1: torch.bfloat16, 2: torch.float32, 3: torch.float64}


def _load_extension() -> None:
    try:
        _state["extension"] = importlib.import_module("genmix._C")
    except ImportError as exc:  # not built, or built against an incompatible torch
        _state["extension_error"] = f"{type(exc).__name__}: {exc}"


def extension():
    """The compiled module `genmix._C`, or None (the reason is in `extension_error()`)."""
    return _state["extension"]


def extension_error() -> Optional[str]:
    return _state["extension_error"]


def triton_available() -> bool:
    return _state["triton"]


def triton_error() -> Optional[str]:
    return _state["triton_error"]


def op(name: str, impl: str):
    """The operator that runs `name` for implementation `impl` (cpp, cuda or triton)."""
    return getattr(torch.ops.genmix, f"{name}_triton" if impl == "triton" else name)


def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.genmix, name)
    except (AttributeError, RuntimeError):
        return False
    return True


# ------------------------------------------------------------------- fake implementations

def _channels_last_4d(t: torch.Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _upfirdn2d_fake(x, f, params, flip_filter, gain):
    upx, upy, downx, downy, px0, px1, py0, py1 = params
    fh, fw = f.shape
    out_h = (x.shape[2] * upy + py0 + py1 - fh) // downy + 1
    out_w = (x.shape[3] * upx + px0 + px1 - fw) // downx + 1
    fmt = torch.channels_last if _channels_last_4d(x) else torch.contiguous_format
    return torch.empty((x.shape[0], x.shape[1], out_h, out_w), dtype=x.dtype, device=x.device,
                       memory_format=fmt)


def _bias_act_fake(x, b, act, alpha, gain, clamp, dim):
    return torch.empty_like(x)


def _bias_act_grad_fake(dy, x, b, act, alpha, gain, clamp, dim):
    return torch.empty_like(x)


def _sample_dirichlet_fake(concentration, seed):
    return torch.empty(concentration.shape, dtype=concentration.dtype, device=concentration.device)


def _mix_batch_fake(xs, ys, out_dtype, dist, alpha, scale, seed):
    x0, y0 = xs[0], ys[0]
    return (torch.empty(x0.shape, dtype=MIX_OUT_DTYPES[out_dtype], device=x0.device),
            torch.empty(y0.shape, dtype=y0.dtype, device=y0.device),
            torch.empty((x0.shape[0], len(xs)), dtype=y0.dtype, device=y0.device))


def _modulate_weights_fake(weight, styles, demodulate, eps):
    n, (o, i, k) = styles.shape[0], weight.shape
    return weight.new_empty((n, o, i, k)), weight.new_empty((n, o))


def _modulate_weights_backward_fake(weight, styles, d, g, demodulate, eps):
    return torch.empty_like(weight), torch.empty_like(styles)


def _modconv_epilogue_fake(y, d, noise, b, act, alpha, gain, clamp):
    fmt = torch.contiguous_format if y.is_contiguous() else torch.channels_last
    return torch.empty_like(y, memory_format=fmt)


def _modconv_epilogue_backward_fake(y, d, noise, b, g, act, alpha, gain, clamp, need_y, need_d, need_noise,
                                    need_b):
    n, c, h, w = y.shape
    fmt = torch.contiguous_format if y.is_contiguous() else torch.channels_last
    return (torch.empty_like(y, memory_format=fmt) if need_y else y.new_empty((0,)),
            y.new_empty((n, c)) if need_d and d is not None else y.new_empty((0,)),
            y.new_empty((n, 1, h, w)) if need_noise and noise is not None else y.new_empty((0,)),
            y.new_empty((c,)) if need_b and b is not None else y.new_empty((0,)))


def _fully_connected_fake(x, weight, bias, weight_gain, bias_gain, act, alpha, gain, clamp):
    shape = (x.shape[0], weight.shape[0])
    return x.new_empty(shape), x.new_empty(shape)


FAKES = {
    "upfirdn2d": _upfirdn2d_fake,
    "bias_act": _bias_act_fake,
    "bias_act_grad": _bias_act_grad_fake,
    "bias_act_grad2": _bias_act_grad_fake,
    "sample_dirichlet": _sample_dirichlet_fake,
    "mix_batch": _mix_batch_fake,
    "modulate_weights": _modulate_weights_fake,
    "modulate_weights_backward": _modulate_weights_backward_fake,
    "modconv_epilogue": _modconv_epilogue_fake,
    "modconv_epilogue_backward": _modconv_epilogue_backward_fake,
    "fully_connected": _fully_connected_fake,
}


# ------------------------------------------------------------------------------- autograd

def like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`t` laid out with exactly the strides of dense `ref`, so both share flat indices."""
    if t.stride() == ref.stride():
        return t
    return torch.empty_like(ref).copy_(t)


def sum_to_bias(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.sum(dim=[i for i in range(t.ndim) if i != dim])


def upfirdn2d_adjoint_params(params, f_shape, x_hw, y_hw):
    """The resampling parameters of upfirdn2d's adjoint: zero-insert by `down`, pad', correlate
    with the flipped filter, keep every `up`-th sample."""
    upx, upy, downx, downy, px0, px1, py0, py1 = params
    fh, fw = f_shape
    (in_h, in_w), (out_h, out_w) = x_hw, y_hw
    return [downx, downy, upx, upy,
            fw - px0 - 1, in_w * upx - out_w * downx + px0 - upx + 1,
            fh - py0 - 1, in_h * upy - out_h * downy + py0 - upy + 1]


def _autograd_upfirdn2d(impl):
    forward = op("upfirdn2d", impl)

    def setup_context(ctx, inputs, output):
        x, f, params, flip_filter, gain = inputs
        ctx.save_for_backward(f)
        ctx.meta = (list(params), flip_filter, gain, (x.shape[2], x.shape[3]), (output.shape[2], output.shape[3]))

    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        params, flip_filter, gain, x_hw, y_hw = ctx.meta
        back = upfirdn2d_adjoint_params(params, f.shape, x_hw, y_hw)
        dx = forward(dy, f, back, not flip_filter, gain) if ctx.needs_input_grad[0] else None
        return dx, None, None, None, None

    return backward, setup_context


def _autograd_bias_act(impl):
    grad_op = op("bias_act_grad", impl)

    def setup_context(ctx, inputs, output):
        x, b, act, alpha, gain, clamp, dim = inputs
        ctx.save_for_backward(x, b)
        ctx.args = (act, alpha, gain, clamp, dim)

    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim = ctx.args[-1]
        dx = grad_op(like(dy, x), x, b, *ctx.args)
        db = sum_to_bias(dx, dim) if b is not None and ctx.needs_input_grad[1] else None
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None

    return backward, setup_context


def _autograd_bias_act_grad(impl):
    grad_op, grad2_op = op("bias_act_grad", impl), op("bias_act_grad2", impl)

    def setup_context(ctx, inputs, output):
        dy, x, b, act, alpha, gain, clamp, dim = inputs
        ctx.save_for_backward(dy, x, b)
        ctx.args = (act, alpha, gain, clamp, dim)

    def backward(ctx, ddx):
        dy, x, b = ctx.saved_tensors
        dim = ctx.args[-1]
        ddx = like(ddx, x)
        d_dy = grad_op(ddx, x, b, *ctx.args) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if ctx.needs_input_grad[1] or (b is not None and ctx.needs_input_grad[2]):
            d_x = grad2_op(like(ddx * dy, x), x, b, *ctx.args)
            if b is not None and ctx.needs_input_grad[2]:
                d_b = sum_to_bias(d_x, dim)
            if not ctx.needs_input_grad[1]:
                d_x = None
        return d_dy, d_x, d_b, None, None, None, None, None

    return backward, setup_context


def _autograd_bias_act_grad2(impl):
    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, grad):
        raise RuntimeError("genmix.bias_act: only the first and second derivatives are implemented; "
                           "use impl='ref' for higher orders")

    return backward, setup_context


def _autograd_modulate_weights(impl):
    backward_op = op("modulate_weights_backward", impl)

    def setup_context(ctx, inputs, output):
        weight, styles, demodulate, eps = inputs
        ctx.save_for_backward(weight, styles, output[1])
        ctx.args = (demodulate, eps)

    def backward(ctx, grad_out, _grad_d):
        weight, styles, d = ctx.saved_tensors
        demodulate, eps = ctx.args
        if torch.is_grad_enabled():
            # create_graph (path-length regularisation): the reference formulas, differentiable.
            needs = ctx.needs_input_grad[:2]
            w = weight[None] * styles[:, None, :, None]
            if demodulate:
                w = w * (w.square().sum(dim=[2, 3]) + eps).rsqrt()[:, :, None, None]
            targets = [t for t, need in zip((weight, styles), needs) if need]
            grads = iter(torch.autograd.grad(w, targets, grad_out, create_graph=True))
            return tuple(next(grads) if need else None for need in needs) + (None, None)
        gw, gs = backward_op(weight, styles, d, grad_out.contiguous(), demodulate, eps)
        return gw, gs, None, None

    return backward, setup_context


def _autograd_modconv_epilogue(impl):
    backward_op = op("modconv_epilogue_backward", impl)
    bias_act_op = op("bias_act", impl)

    def setup_context(ctx, inputs, output):
        y, d, noise, b, act, alpha, gain, clamp = inputs
        ctx.save_for_backward(y, d, noise, b)
        ctx.args = (act, alpha, gain, clamp)

    def backward(ctx, grad):
        y, d, noise, b = ctx.saved_tensors
        need = [ctx.needs_input_grad[k] and t is not None for k, t in enumerate((y, d, noise, b))]
        if torch.is_grad_enabled():
            # create_graph: differentiate the equivalent unfused operators.
            v = y if d is None else y * d.reshape(d.shape[0], d.shape[1], 1, 1)
            if noise is not None:
                v = v + noise
            res = bias_act_op(v, b, *ctx.args, 1)
            targets = [t for t, n in zip((y, d, noise, b), need) if n]
            grads = iter(torch.autograd.grad(res, targets, grad, create_graph=True, allow_unused=True))
            out = [next(grads) if n else None for n in need]
            out = [torch.zeros_like(t) if n and g is None else g for g, n, t in zip(out, need, (y, d, noise, b))]
            return tuple(out) + (None,) * 4
        gy, gd, gnoise, gb = backward_op(y, d, noise, b, grad, *ctx.args, *need)
        if need[2] and gnoise.shape != noise.shape:
            gnoise = gnoise.sum_to_size(noise.shape)
        return ((gy if need[0] else None), (gd if need[1] else None), (gnoise if need[2] else None),
                (gb if need[3] else None), None, None, None, None)

    return backward, setup_context


def _autograd_fully_connected(impl):
    grad_op = op("bias_act_grad", impl)

    def setup_context(ctx, inputs, output):
        x, weight, bias, weight_gain, bias_gain, act, alpha, gain, clamp = inputs
        b = None
        if bias is not None:  # scaled as the kernel scales it (no .to that could return bias itself)
            b = (bias if bias.dtype == x.dtype else bias.to(x.dtype)) * bias_gain
        ctx.save_for_backward(x, weight, output[1], b)
        ctx.args = (act, alpha, gain, clamp)
        ctx.gains = (weight_gain, bias_gain)
        ctx.bias_dtype = None if bias is None else bias.dtype

    def backward(ctx, grad_out, grad_v):
        x, weight, v, b = ctx.saved_tensors
        wg, bg = ctx.gains
        # Composed of differentiable operators: a second derivative goes through them (and
        # through v, this operator's own output).
        dv = grad_op(like(grad_out, v), v, b, *ctx.args, 1)
        if grad_v is not None:
            dv = dv + grad_v
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = dv.matmul(weight.to(x.dtype) * wg)
        if ctx.needs_input_grad[1]:
            dw = (dv.t().matmul(x) * wg).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            db = (dv.sum(0) * bg).to(ctx.bias_dtype)
        return dx, dw, db, None, None, None, None, None, None

    return backward, setup_context


AUTOGRAD = {
    "upfirdn2d": _autograd_upfirdn2d,
    "bias_act": _autograd_bias_act,
    "bias_act_grad": _autograd_bias_act_grad,
    "bias_act_grad2": _autograd_bias_act_grad2,
    "modulate_weights": _autograd_modulate_weights,
    "modconv_epilogue": _autograd_modconv_epilogue,
    "fully_connected": _autograd_fully_connected,
}


# ------------------------------------------------------------------------ registration

def _register(name: str, impl: str) -> None:
    qualname = f"genmix::{name}_triton" if impl == "triton" else f"genmix::{name}"
    if impl != "triton":  # triton_op ops trace their own Python for shapes
        torch.library.register_fake(qualname)(FAKES[name])
    if name in AUTOGRAD:
        backward, setup_context = AUTOGRAD[name](impl)
        torch.library.register_autograd(qualname, backward, setup_context=setup_context)


def _define_triton_ops() -> None:
    """The Triton kernels as operators: one `torch.library.triton_op` per kernel entry point."""
    from genmix.kernels import bias_act as k_bias_act
    from genmix.kernels import mixer as k_mixer
    from genmix.kernels import modulate as k_modulate
    from genmix.kernels import upfirdn2d as k_upfirdn2d

    # typing.List / typing.Tuple spelled out: torch 2.6's schema inference refuses list[int] and
    # cannot resolve a bare `Tuple` name in these (string) annotations.
    triton_op = torch.library.triton_op

    @triton_op("genmix::upfirdn2d_triton", mutates_args=())
    def upfirdn2d_triton(x: torch.Tensor, f: torch.Tensor, params: typing.List[int], flip_filter: bool,
                         gain: float) -> torch.Tensor:
        return k_upfirdn2d.upfirdn2d(x, f, *params, flip_filter, gain)

    @triton_op("genmix::bias_act_triton", mutates_args=())
    def bias_act_triton(x: torch.Tensor, b: Optional[torch.Tensor], act: int, alpha: float, gain: float,
                        clamp: float, dim: int) -> torch.Tensor:
        return k_bias_act.bias_act(dense(x), b, None, act, alpha, gain, clamp, 0, dim)

    @triton_op("genmix::bias_act_grad_triton", mutates_args=())
    def bias_act_grad_triton(dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], act: int,
                             alpha: float, gain: float, clamp: float, dim: int) -> torch.Tensor:
        x = dense(x)
        return k_bias_act.bias_act(x, b, like(dy, x), act, alpha, gain, clamp, 1, dim)

    @triton_op("genmix::bias_act_grad2_triton", mutates_args=())
    def bias_act_grad2_triton(ddx_dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], act: int,
                              alpha: float, gain: float, clamp: float, dim: int) -> torch.Tensor:
        x = dense(x)
        return k_bias_act.bias_act(x, b, like(ddx_dy, x), act, alpha, gain, clamp, 2, dim)

    @triton_op("genmix::sample_dirichlet_triton", mutates_args=())
    def sample_dirichlet_triton(concentration: torch.Tensor, seed: int) -> torch.Tensor:
        return k_mixer.sample_dirichlet(concentration.contiguous(), seed)

    @triton_op("genmix::mix_batch_triton", mutates_args=())
    def mix_batch_triton(xs: typing.List[torch.Tensor], ys: typing.List[torch.Tensor], out_dtype: int, dist: int,
                         alpha: float, scale: float, seed: int) -> typing.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return k_mixer.mix_batch(xs, ys, MIX_OUT_DTYPES[out_dtype], dist, alpha, scale, seed)

    @triton_op("genmix::modulate_weights_triton", mutates_args=())
    def modulate_weights_triton(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                                eps: float) -> typing.Tuple[torch.Tensor, torch.Tensor]:
        return k_modulate.modulate_weights(weight, styles, demodulate, eps)

    @triton_op("genmix::modulate_weights_backward_triton", mutates_args=())
    def modulate_weights_backward_triton(weight: torch.Tensor, styles: torch.Tensor, d: torch.Tensor,
                                         g: torch.Tensor, demodulate: bool,
                                         eps: float) -> typing.Tuple[torch.Tensor, torch.Tensor]:
        return k_modulate.modulate_weights_backward(weight, styles, d, g, demodulate, eps)


def dense(t: torch.Tensor) -> torch.Tensor:
    """Kernels walk flat storage: a tensor with gaps or overlaps is compacted, keeping the order
    of its dimensions (as torch.empty_like does, so outputs match the fake implementations)."""
    if t.is_contiguous() or (t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)):
        return t
    expected = 1
    for d in sorted(range(t.ndim), key=t.stride):
        if t.shape[d] == 1:
            continue
        if t.stride(d) != expected:
            return torch.empty_like(t).copy_(t)
        expected *= t.shape[d]
    return t


def _load() -> None:
    _load_extension()
    if extension() is not None:
        for name in NAMES:
            _register(name, "cpp")
    try:
        importlib.import_module("triton")
    except ImportError as exc:
        _state["triton_error"] = f"triton is not installed ({exc}); install it with `pip install triton`"
        return
    if not hasattr(torch.library, "triton_op"):
        _state["triton_error"] = f"torch {torch.__version__} has no torch.library.triton_op (torch >= 2.6 needed)"
        return
    try:
        if not _has_op("upfirdn2d_triton"):
            _define_triton_ops()
            for name in TRITON_NAMES:
                _register(name, "triton")
    except Exception as exc:  # a triton too old or too new for the kernels: say so, do not break import
        _state["triton_error"] = f"the Triton kernels could not be loaded ({type(exc).__name__}: {exc})"
        return
    _state["triton"] = True


_load()
