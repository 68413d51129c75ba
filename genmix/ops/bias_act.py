"""bias_act: bias add + activation + gain + clamp in one pass over memory.

Unfused, these are four elementwise passes (and four saved tensors for autograd) after every
layer of a GAN; fused, one read and one write. Twice differentiable, because the R1 penalty of
the discriminator differentiates a gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genmix.ops import _backend, _library
from genmix.ops._checks import CPU_DTYPES, GPU_DTYPES, check_float_tensor, check_same_device, dtype_reason

OP = "bias_act"


@dataclass(frozen=True)
class Activation:
    code: int  # the BiasActKind value shared with the C++/CUDA/Triton kernels
    default_alpha: float
    default_gain: float


ACTIVATIONS = {
    "linear": Activation(0, 0.0, 1.0),
    "relu": Activation(1, 0.0, math.sqrt(2)),
    "lrelu": Activation(2, 0.2, math.sqrt(2)),
    "tanh": Activation(3, 0.0, 1.0),
    "sigmoid": Activation(4, 0.0, 1.0),
    "elu": Activation(5, 1.0, 1.0),
    "selu": Activation(6, 0.0, 1.0),
    "softplus": Activation(7, 0.0, 1.0),
    "swish": Activation(8, 0.0, math.sqrt(2)),
}


def _activate(x, act, alpha):
    if act == "linear":
        return x
    if act == "relu":
        return F.relu(x)
    if act == "lrelu":
        return F.leaky_relu(x, alpha)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    if act == "elu":
        return F.elu(x, alpha)
    if act == "selu":
        return F.selu(x)
    if act == "softplus":
        return F.softplus(x)
    if act == "swish":
        return torch.sigmoid(x) * x
    raise ValueError(f"{OP}: unknown act {act!r}")


def bias_act_ref(x, b, dim, act, alpha, gain, clamp):
    """Pure-PyTorch definition: clamp(act(x + b) * gain, -clamp, clamp)."""
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = _activate(x, act, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="auto"):
    """clamp(act(x + b) * gain, -clamp, clamp) with `b` broadcast along dimension `dim`.

    act: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish. alpha (lrelu slope,
    elu alpha) and gain default per activation (e.g. lrelu: 0.2 and sqrt(2)); clamp=None
    disables clamping. Any layout (contiguous, channels_last) keeps its strides.
    """
    check_float_tensor(OP, "x", x)
    if x.ndim == 0:
        raise ValueError(f"{OP}: x must have at least 1 dimension")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{OP}: dim must be an int, got {type(dim).__name__}")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{OP}: dim={dim} is out of range for x with {x.ndim} dimensions")
    dim %= x.ndim
    if act not in ACTIVATIONS:
        raise ValueError(f"{OP}: unknown act {act!r}; choose one of {', '.join(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = float(spec.default_alpha if alpha is None else alpha)
    gain = float(spec.default_gain if gain is None else gain)
    if clamp is not None:
        clamp = float(clamp)
        if not clamp >= 0:
            raise ValueError(f"{OP}: clamp must be >= 0 or None, got {clamp}")
    if b is not None:
        check_float_tensor(OP, "b", b, 1)
        check_same_device(OP, "b", b, x)
        if b.shape[0] != x.shape[dim]:
            raise ValueError(f"{OP}: b has {b.shape[0]} elements but x.shape[{dim}] is {x.shape[dim]}")
        b = b.to(x.dtype)

    def unsupported(name):
        if name == "ref":
            return None
        return dtype_reason(x, CPU_DTYPES if name == "cpp" else GPU_DTYPES)

    chosen = _backend.select_impl(OP, impl, x.device, unsupported)
    if chosen == "ref":
        return bias_act_ref(x, b, dim, act, alpha, gain, clamp)
    # torch.ops.genmix.bias_act (cpp and cuda) or bias_act_triton. Its backward is the operator
    # bias_act_grad, itself differentiable once more (genmix/ops/_library.py).
    return _library.op(OP, chosen)(_library.dense(x), None if b is None else b.contiguous(), spec.code,
                                   alpha, gain, -1.0 if clamp is None else clamp, dim)


# ------------------------------------------------------------------- dense layer + bias_act

def fully_connected(x, weight, bias=None, weight_gain=1.0, bias_gain=1.0, act="linear", alpha=None,
                    gain=None, clamp=None, impl="auto"):
    """`bias_act(x @ (weight * weight_gain).T, bias * bias_gain, dim=1, act=act, ...)`: a dense
    layer with equalized-learning-rate gains, as StyleGAN2's mapping and affine layers use.

    `impl="ref"` makes exactly those calls. With the C++ kernels the layer is one operator and
    one autograd node instead of five: these layers are tiny, so the per-node overhead is most
    of their cost.
    """
    check_float_tensor(OP, "x", x)
    check_float_tensor(OP, "weight", weight, 2)
    check_same_device(OP, "weight", weight, x)
    fusable = (x.ndim == 2 and weight.shape[1] == x.shape[1] and impl in ("auto", "cpp")
               and act in ACTIVATIONS and x.device.type == "cpu"
               and x.dtype in CPU_DTYPES and _backend.unavailable_reason("cpp", x.device) is None
               and (bias is None or (isinstance(bias, torch.Tensor) and bias.ndim == 1
                                     and bias.shape[0] == weight.shape[0] and bias.device == x.device)))
    if not fusable:
        w = weight.to(x.dtype) * weight_gain
        b = None if bias is None else bias.to(x.dtype) * bias_gain
        return bias_act(x.matmul(w.t()), b, dim=1, act=act, alpha=alpha, gain=gain, clamp=clamp,
                        impl=impl)
    _backend.select_impl(OP, impl, x.device, lambda name: None)  # cpp: checked just above
    spec = ACTIVATIONS[act]
    alpha = float(spec.default_alpha if alpha is None else alpha)
    gain = float(spec.default_gain if gain is None else gain)
    if clamp is not None:
        clamp = float(clamp)
        if not clamp >= 0:
            raise ValueError(f"{OP}: clamp must be >= 0 or None, got {clamp}")
    # One operator (torch.ops.genmix.fully_connected): the product and the fused bias_act
    # kernel, and in the backward the activation derivative, both products and the bias sum.
    out, _ = torch.ops.genmix.fully_connected(x, weight, bias, float(weight_gain), float(bias_gain), spec.code,
                                              alpha, gain, -1.0 if clamp is None else clamp)
    return out
