"""Triton kernel for bias_act; the semantics are those of BiasActParams in csrc/params.h.

With v = x + b[channel]:
  grad_order 0: out = clamp(act(v) * gain, -clamp, clamp)
  grad_order 1: out = dy * gain * act'(v)  * inside(v)
  grad_order 2: out = dy * gain * act''(v) * inside(v)
where inside(v) = |act(v) * gain| <= clamp (always true without a clamp).

The op walks the flat storage of a dense tensor, whatever its dimension order; the channel of
storage index i is (i // stride(dim)) % C. Instead of dividing per element, the storage is viewed
as a (rows, cols) matrix whose channel is constant along a row (cols = stride(dim)) or equal to
the column (stride(dim) == 1, e.g. channels_last with dim=1), so a program computes its channels
once per row or reads them off the column index. Activation, derivative order, bias and clamp
are compile-time constants, so each variant compiles to a straight elementwise pass.
"""

import contextlib

import torch
import triton
import triton.language as tl

# torch.compile traces a kernel launch only through wrap_triton (the kernels run as
# torch.library.triton_op operators); in eager mode it launches the kernel directly.
_launch = getattr(torch.library, "wrap_triton", lambda kernel: kernel)

ACT_LINEAR, ACT_RELU, ACT_LRELU, ACT_TANH, ACT_SIGMOID, ACT_ELU, ACT_SELU, ACT_SOFTPLUS, ACT_SWISH = range(9)

_SELU_SCALE = tl.constexpr(1.0507009873554805)
_SELU_ALPHA = tl.constexpr(1.6732632423543772)
# torch's softplus threshold (beta = 1): above it softplus(v) = v and its derivative is 1.
_SOFTPLUS_THRESHOLD = tl.constexpr(20.0)
# Below |x| = ln(2) / 2, exp(x) - 1 loses bits to cancellation; a short Taylor series does not.
_EXPM1_SERIES_LIMIT = tl.constexpr(0.34657359027997264)

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ------------------------------------------------------------------------------ math helpers
# triton.language has exp/log but no expm1/log1p/tanh that run both compiled and under the
# interpreter, so the accurate forms are built here from exp and polynomials.

@triton.jit
def _expm1_series(x, N: tl.constexpr):
    # sum_{k=1..N} x^k / k!  ==  x * (1 + x/2 * (1 + x/3 * (... (1 + x/N))))
    p = 1.0 + x * (1.0 / N)
    for k in tl.static_range(N - 1, 1, -1):
        p = 1.0 + x * (1.0 / k) * p
    return x * p


@triton.jit
def _expm1(x):
    # Degrees chosen so the truncation error at |x| = ln(2)/2 is below half an ulp.
    if x.dtype == tl.float64:
        s = _expm1_series(x, 13)
    else:
        s = _expm1_series(x, 7)
    return tl.where(tl.abs(x) < _EXPM1_SERIES_LIMIT, s, tl.exp(x) - 1.0)


@triton.jit
def _log1p_series(z, K: tl.constexpr):
    # log(1 + z) = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...), s = z / (2 + z) <= 1/3 for
    # z in [0, 1]; K terms reach full precision there.
    s = z / (2.0 + z)
    t = s * s
    q = t * (1.0 / (2 * K - 1))
    for k in tl.static_range(K - 2, 0, -1):
        q = t * (1.0 / (2 * k + 1) + q)
    return 2.0 * s * (1.0 + q)


@triton.jit
def _sigmoid(v):
    return 1.0 / (1.0 + tl.exp(-v))


@triton.jit
def _tanh(v):
    # tanh|v| = -expm1(-2|v|) / (2 + expm1(-2|v|)): accurate near 0, saturates cleanly to 1.
    e = _expm1(-2.0 * tl.abs(v))
    t = -e / (2.0 + e)
    return tl.where(v < 0, -t, t)


@triton.jit
def _softplus(v):
    # log(1 + e^v) = max(v, 0) + log1p(e^-|v|): the log1p argument stays in (0, 1].
    z = tl.exp(-tl.abs(v))
    if v.dtype == tl.float64:
        l = _log1p_series(z, 16)
    else:
        l = _log1p_series(z, 7)
    return tl.where(v > _SOFTPLUS_THRESHOLD, v, tl.maximum(v, 0.0) + l)


# ------------------------------------------------------------------------ activations

@triton.jit
def _act(v, alpha, ACT: tl.constexpr):
    if ACT == 1:
        y = tl.where(v < 0, 0.0, v)  # keeps NaN, like torch.relu
    elif ACT == 2:
        y = tl.where(v > 0, v, v * alpha)
    elif ACT == 3:
        y = _tanh(v)
    elif ACT == 4:
        y = _sigmoid(v)
    elif ACT == 5:
        y = tl.where(v > 0, v, alpha * _expm1(v))
    elif ACT == 6:
        y = _SELU_SCALE * tl.where(v > 0, v, _SELU_ALPHA * _expm1(v))
    elif ACT == 7:
        y = _softplus(v)
    elif ACT == 8:
        y = v * _sigmoid(v)
    else:
        y = v
    return y


@triton.jit
def _act_d1(v, y, alpha, ACT: tl.constexpr):
    # First derivative; at the kinks (and for NaN) it follows torch: relu'(0) = 0,
    # lrelu'(0) = alpha, elu'(0) = alpha (the v <= 0 branch).
    if ACT == 1:
        d = tl.where(v <= 0, 0.0, 1.0)
    elif ACT == 2:
        d = tl.where(v > 0, 1.0, alpha)
    elif ACT == 3:
        d = 1.0 - y * y
    elif ACT == 4:
        d = y * (1.0 - y)
    elif ACT == 5:
        d = tl.where(v > 0, 1.0, alpha * tl.exp(v))
    elif ACT == 6:
        d = tl.where(v > 0, _SELU_SCALE, (_SELU_SCALE * _SELU_ALPHA) * tl.exp(v))
    elif ACT == 7:
        d = tl.where(v > _SOFTPLUS_THRESHOLD, 1.0, _sigmoid(v))
    elif ACT == 8:
        s = _sigmoid(v)
        d = s * (1.0 + v * (1.0 - s))
    else:
        d = tl.full(v.shape, 1.0, v.dtype)
    return d


@triton.jit
def _act_d2(v, y, alpha, ACT: tl.constexpr):
    # Second derivative (piecewise-linear activations have none). At the kinks it follows
    # torch's double backward, whose branch conditions differ from the first derivative's:
    # elu''(0) = 0 and softplus''(20) = 0. NaN takes the formula branch, so it propagates.
    if ACT == 3:
        d = -2.0 * y * (1.0 - y * y)
    elif ACT == 4:
        d = y * (1.0 - y) * (1.0 - 2.0 * y)
    elif ACT == 5:
        d = tl.where(v >= 0, 0.0, alpha * tl.exp(v))
    elif ACT == 6:
        d = tl.where(v >= 0, 0.0, (_SELU_SCALE * _SELU_ALPHA) * tl.exp(v))
    elif ACT == 7:
        s = _sigmoid(v)
        d = tl.where(v >= _SOFTPLUS_THRESHOLD, 0.0, s * (1.0 - s))
    elif ACT == 8:
        s = _sigmoid(v)
        d = s * (1.0 - s) * (2.0 + v * (1.0 - 2.0 * s))
    else:
        d = tl.zeros(v.shape, v.dtype)
    return d


# ------------------------------------------------------------------------------ kernel

@triton.jit
def _bias_act_kernel(
    x_ptr, b_ptr, dy_ptr, out_ptr,
    rows, cols, channels,
    # float64 so that float64 tensors see the exact values; float32 math rounds them once.
    alpha: tl.float64, gain: tl.float64, clamp: tl.float64,
    COMPUTE: tl.constexpr, ACT: tl.constexpr, GRAD: tl.constexpr,
    HAS_BIAS: tl.constexpr, CHANNEL_IS_ROW: tl.constexpr, HAS_CLAMP: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, INDEX64: tl.constexpr,
):
    # Storage viewed as a (rows, cols) row-major matrix; one BLOCK_R x BLOCK_C tile per program.
    pid = tl.program_id(0)
    col_tiles = tl.cdiv(cols, BLOCK_C)
    rt = pid // col_tiles
    ct = pid - rt * col_tiles
    if INDEX64:
        rt = rt.to(tl.int64)
        ct = ct.to(tl.int64)
    row0 = rt * BLOCK_R
    r = tl.arange(0, BLOCK_R)
    c = ct * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = ((row0 + r) < rows)[:, None] & (c < cols)[None, :]
    offs = row0 * cols + (r[:, None] * cols + c[None, :])

    v = tl.load(x_ptr + offs, mask=mask, other=0).to(COMPUTE)
    if HAS_BIAS:
        if CHANNEL_IS_ROW:
            # One division per row; the channel index is always in range, masked rows included.
            ch = (row0 % channels + r) % channels
            v = v + tl.load(b_ptr + ch).to(COMPUTE)[:, None]
        else:
            v = v + tl.load(b_ptr + c, mask=c < cols, other=0).to(COMPUTE)[None, :]

    a = tl.full((), alpha, COMPUTE)
    g = tl.full((), gain, COMPUTE)
    cl = tl.full((), clamp, COMPUTE)
    y = _act(v, a, ACT)
    if GRAD == 0:
        out = y * g
        if HAS_CLAMP:
            # Comparisons rather than min/max so NaN passes through as in torch.clamp.
            out = tl.where(out > cl, cl, tl.where(out < -cl, -cl, out))
    else:
        if GRAD == 1:
            d = _act_d1(v, y, a, ACT)
        else:
            d = _act_d2(v, y, a, ACT)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0).to(COMPUTE)
        out = dy * g * d
        if HAS_CLAMP:
            out = tl.where(tl.abs(y * g) <= cl, out, 0.0)
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------ launcher

def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _is_dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: the strides, sorted, describe a contiguous layout."""
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _device_guard(t: torch.Tensor):
    # Triton launches on the current CUDA device; make it the tensor's.
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def bias_act(x, b, dy, act, alpha, gain, clamp, grad_order, dim):
    """Fused bias + activation (grad_order 0) or its first/second derivative times dy.

    x: dense (non-overlapping and dense, any dimension order) float16/bfloat16/float32/float64.
    b: None or 1-D contiguous with x.shape[dim] elements, x's dtype. dy: None for grad_order 0,
    else x's shape, strides and dtype. act: activation code (params.h). clamp < 0 disables the
    clamp. Returns torch.empty_like(x) filled, so x's strides are kept.
    """
    assert x.dtype in _DTYPES, f"unsupported dtype {x.dtype}"
    assert _is_dense(x), "x must be non-overlapping and dense"
    assert 0 <= int(act) <= 8, f"unknown activation code {act}"
    assert grad_order in (0, 1, 2), f"grad_order must be 0, 1 or 2, got {grad_order}"
    ndim = max(x.dim(), 1)
    dim = int(dim) % ndim
    if grad_order == 0:
        dy = None
    else:
        assert dy is not None and dy.shape == x.shape and dy.stride() == x.stride()
        assert dy.dtype == x.dtype and dy.device == x.device
    if b is not None:
        assert b.dim() == 1 and b.is_contiguous() and b.dtype == x.dtype and b.device == x.device
        assert b.numel() == (x.shape[dim] if x.dim() > 0 else 1)

    out = torch.empty_like(x)
    numel = x.numel()
    if numel == 0:
        return out

    channels = 1
    channel_is_row = True
    if b is None or b.numel() == 1:
        rows, cols = 1, numel  # no per-element channel: one flat row (channel 0 throughout)
    else:
        channels = b.numel()
        cs = x.stride(dim)
        assert numel % (cs * channels) == 0, "x must be dense"
        if cs == 1:
            rows, cols, channel_is_row = numel // channels, channels, False
        else:
            rows, cols = numel // cs, cs

    block = 2048 if x.dtype == torch.float64 else 4096  # float64 needs twice the registers
    block_c = min(_next_pow2(cols), block)
    block_r = min(block // block_c, _next_pow2(rows))
    tile = block_r * block_c
    num_warps = max(1, min(8, tile // 512))
    grid = (triton.cdiv(rows, block_r) * triton.cdiv(cols, block_c),)
    compute = tl.float64 if x.dtype == torch.float64 else tl.float32
    clamp = float(clamp)
    with _device_guard(x):
        _launch(_bias_act_kernel)[grid](
            x, x if b is None else b, x if dy is None else dy, out,
            rows, cols, channels,
            float(alpha), float(gain), clamp,
            COMPUTE=compute, ACT=int(act), GRAD=int(grad_order),
            HAS_BIAS=b is not None, CHANNEL_IS_ROW=channel_is_row, HAS_CLAMP=clamp >= 0,
            BLOCK_R=block_r, BLOCK_C=block_c, INDEX64=numel + 2 * tile >= 2**31,
            num_warps=num_warps,
        )
    return out
