"""Triton kernels for StyleGAN2's modulated convolution weights (ModulateParams in csrc/params.h).

w (O, I, K), styles s (N, I):
  d[n, o]       = demodulate ? 1 / sqrt(sum_{i,k} (w s)^2 + eps) : 1
  out[n, o, i, k] = w[o, i, k] s[n, i] d[n, o]
and the backward from g = dL/dout (N, O, I, K):
  gd[n, o]  = sum_{i,k} g w s,   gq = demodulate ? -0.5 d^3 gd : 0
  gw[o,i,k] = sum_n g s d + 2 w sum_n gq s^2
  gs[n, i]  = sum_{o,k} g w d + 2 s sum_o gq sum_k w^2

Forward: sum_{i,k} (w s)^2 = sum_i s^2 wsq[o, i] with wsq = sum_k w^2 computed once, so d is a
small (N, I) x (I, O) product; out is then written in one pass along its contiguous rows.
Backward: three kernels, each reading g (the big array) once along contiguous memory: gq per
(n, o) row, gw per (o, block of i*K) looping over n, gs per (n, block of i) looping over o.
Everything accumulates in the input dtype.
"""

import contextlib

import torch
import triton
import triton.language as tl

# torch.compile traces a kernel launch only through wrap_triton (the kernels run as
# torch.library.triton_op operators); in eager mode it launches the kernel directly.
_launch = getattr(torch.library, "wrap_triton", lambda kernel: kernel)

_DTYPES = (torch.float32, torch.float64)
_BLOCK = 1024   # elements of one (n, o) row handled per step
_BLOCK_I = 32   # input channels per program of the d and gs kernels
_BLOCK_O = 32   # output channels per step of the d and gs kernels


@triton.jit
def _wsq_kernel(w_ptr, wsq_ptr, OI, K, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < OI
    acc = tl.zeros((BLOCK,), dtype=w_ptr.dtype.element_ty)
    for k in range(K):
        v = tl.load(w_ptr + offs * K + k, mask=mask, other=0.0)
        acc += v * v
    tl.store(wsq_ptr + offs, acc, mask=mask)


@triton.jit
def _demod_kernel(s_ptr, wsq_ptr, d_ptr, O, I, eps,
                  DEMODULATE: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr):
    # One program per (n, block of o): a (BLOCK_O, BLOCK_I) tile of wsq times s^2, summed over i.
    n = tl.program_id(0).to(tl.int64)
    o = tl.program_id(1).to(tl.int64) * BLOCK_O + tl.arange(0, BLOCK_O)
    o_mask = o < O
    if DEMODULATE:
        acc = tl.zeros((BLOCK_O,), dtype=d_ptr.dtype.element_ty)
        for i0 in range(0, I, BLOCK_I):
            i = i0 + tl.arange(0, BLOCK_I)
            i_mask = i < I
            sv = tl.load(s_ptr + n * I + i, mask=i_mask, other=0.0)
            q = tl.load(wsq_ptr + o[:, None] * I + i[None, :],
                        mask=o_mask[:, None] & i_mask[None, :], other=0.0)
            acc += tl.sum(q * (sv * sv)[None, :], axis=1)
        dv = 1.0 / tl.sqrt(acc + eps)
    else:
        dv = tl.full((BLOCK_O,), 1.0, d_ptr.dtype.element_ty)
    tl.store(d_ptr + n * O + o, dv, mask=o_mask)


@triton.jit
def _modulate_kernel(w_ptr, s_ptr, d_ptr, out_ptr, O, I, K, BLOCK: tl.constexpr):
    # Program (row r = n * O + o, block of the row's I * K elements).
    r = tl.program_id(0).to(tl.int64)
    n = r // O
    o = r - n * O
    IK = I * K
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = j < IK
    wv = tl.load(w_ptr + o * IK + j, mask=mask, other=0.0)
    sv = tl.load(s_ptr + n * I + j // K, mask=mask, other=0.0)
    dv = tl.load(d_ptr + r)
    tl.store(out_ptr + r * IK + j, wv * sv * dv, mask=mask)


@triton.jit
def _gq_kernel(w_ptr, s_ptr, d_ptr, g_ptr, gq_ptr, O, I, K, BLOCK: tl.constexpr):
    # gq[n, o] = -0.5 d^3 sum_{i,k} g w s; one program per (n, o) row of g.
    r = tl.program_id(0).to(tl.int64)
    n = r // O
    o = r - n * O
    IK = I * K
    acc = tl.zeros((BLOCK,), dtype=gq_ptr.dtype.element_ty)
    for j0 in range(0, IK, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        mask = j < IK
        gv = tl.load(g_ptr + r * IK + j, mask=mask, other=0.0)
        wv = tl.load(w_ptr + o * IK + j, mask=mask, other=0.0)
        sv = tl.load(s_ptr + n * I + j // K, mask=mask, other=0.0)
        acc += gv * wv * sv
    gd = tl.sum(acc, axis=0)
    dv = tl.load(d_ptr + r)
    tl.store(gq_ptr + r, -0.5 * dv * dv * dv * gd)


@triton.jit
def _gw_kernel(w_ptr, s_ptr, d_ptr, g_ptr, gq_ptr, gw_ptr, N, O, I, K,
               DEMODULATE: tl.constexpr, BLOCK: tl.constexpr):
    # Program (o, block of I * K); loops over n, reading one contiguous piece of g per n.
    o = tl.program_id(0).to(tl.int64)
    IK = I * K
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = j < IK
    i = j // K
    a = tl.zeros((BLOCK,), dtype=gw_ptr.dtype.element_ty)
    b = tl.zeros((BLOCK,), dtype=gw_ptr.dtype.element_ty)
    for n in range(N):
        sv = tl.load(s_ptr + n * I + i, mask=mask, other=0.0)
        gv = tl.load(g_ptr + (n * O + o) * IK + j, mask=mask, other=0.0)
        dv = tl.load(d_ptr + n * O + o)
        a += gv * sv * dv
        if DEMODULATE:
            b += tl.load(gq_ptr + n * O + o) * sv * sv
    if DEMODULATE:
        wv = tl.load(w_ptr + o * IK + j, mask=mask, other=0.0)
        a += 2.0 * wv * b
    tl.store(gw_ptr + o * IK + j, a, mask=mask)


@triton.jit
def _gs_kernel(w_ptr, s_ptr, d_ptr, g_ptr, gq_ptr, gs_ptr, O, I, K,
               DEMODULATE: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr):
    # Program (n, block of i); loops over o in (BLOCK_O, BLOCK_I) tiles and over k inside.
    # sum_k w^2 for the gq term comes from the w values loaded anyway.
    n = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1).to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    i_mask = i < I
    a = tl.zeros((BLOCK_I,), dtype=gs_ptr.dtype.element_ty)
    b = tl.zeros((BLOCK_I,), dtype=gs_ptr.dtype.element_ty)
    for o0 in range(0, O, BLOCK_O):
        o = o0 + tl.arange(0, BLOCK_O)
        o_mask = o < O
        mask = o_mask[:, None] & i_mask[None, :]
        gw_sum = tl.zeros((BLOCK_O, BLOCK_I), dtype=gs_ptr.dtype.element_ty)
        ww_sum = tl.zeros((BLOCK_O, BLOCK_I), dtype=gs_ptr.dtype.element_ty)
        w_base = (o[:, None] * I + i[None, :]) * K
        g_base = ((n * O + o[:, None]) * I + i[None, :]) * K
        for k in range(K):
            wv = tl.load(w_ptr + w_base + k, mask=mask, other=0.0)
            gv = tl.load(g_ptr + g_base + k, mask=mask, other=0.0)
            gw_sum += gv * wv
            ww_sum += wv * wv
        dv = tl.load(d_ptr + n * O + o, mask=o_mask, other=0.0)
        a += tl.sum(gw_sum * dv[:, None], axis=0)
        if DEMODULATE:
            qv = tl.load(gq_ptr + n * O + o, mask=o_mask, other=0.0)
            b += tl.sum(ww_sum * qv[:, None], axis=0)
    if DEMODULATE:
        sv = tl.load(s_ptr + n * I + i, mask=i_mask, other=0.0)
        a += 2.0 * sv * b
    tl.store(gs_ptr + n * I + i, a, mask=i_mask)


def _device_of(t):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _check(w, s):
    assert w.dtype in _DTYPES, f"unsupported dtype {w.dtype}"
    assert w.dim() == 3 and w.is_contiguous(), "w must be a contiguous (O, I, K) tensor"
    assert s.dim() == 2 and s.is_contiguous() and s.shape[1] == w.shape[1], "s must be a contiguous (N, I) tensor"
    assert s.dtype == w.dtype and s.device == w.device


def modulate_weights(w, s, demodulate, eps):
    """Returns (out (N, O, I, K), d (N, O))."""
    _check(w, s)
    O, I, K = w.shape
    N = s.shape[0]
    out = torch.empty((N, O, I, K), dtype=w.dtype, device=w.device)
    d = torch.empty((N, O), dtype=w.dtype, device=w.device)
    if N == 0 or O == 0:
        return out, d
    demodulate = bool(demodulate)
    with _device_of(w):
        wsq = w  # unused unless demodulating
        if demodulate:
            wsq = torch.empty((O, I), dtype=w.dtype, device=w.device)
            if O * I > 0:
                _launch(_wsq_kernel)[(triton.cdiv(O * I, _BLOCK),)](w, wsq, O * I, K, BLOCK=_BLOCK)
        _launch(_demod_kernel)[(N, triton.cdiv(O, _BLOCK_O))](
            s, wsq, d, O, I, float(eps), DEMODULATE=demodulate, BLOCK_O=_BLOCK_O, BLOCK_I=_BLOCK_I)
        if I * K > 0:
            _launch(_modulate_kernel)[(N * O, triton.cdiv(I * K, _BLOCK))](w, s, d, out, O, I, K, BLOCK=_BLOCK)
    return out, d


def modulate_weights_backward(w, s, d, g, demodulate, eps):
    """Returns (gw (O, I, K), gs (N, I)). eps is unused: d already holds it."""
    del eps
    _check(w, s)
    O, I, K = w.shape
    N = s.shape[0]
    assert d.shape == (N, O) and d.is_contiguous() and d.dtype == w.dtype and d.device == w.device
    assert g.shape == (N, O, I, K) and g.is_contiguous() and g.dtype == w.dtype and g.device == w.device
    gw = torch.empty_like(w)
    gs = torch.empty_like(s)
    # Without taps every gd, hence every gq, is 0.
    demodulate = bool(demodulate) and I * K > 0
    with _device_of(w):
        gq = d  # unused unless demodulating
        if demodulate and N * O > 0:
            gq = torch.empty((N, O), dtype=w.dtype, device=w.device)
            _launch(_gq_kernel)[(N * O,)](w, s, d, g, gq, O, I, K, BLOCK=_BLOCK)
        if O * I * K > 0:
            _launch(_gw_kernel)[(O, triton.cdiv(I * K, _BLOCK))](
                w, s, d, g, gq, gw, N, O, I, K, DEMODULATE=demodulate, BLOCK=_BLOCK)
        if N * I > 0:
            _launch(_gs_kernel)[(N, triton.cdiv(I, _BLOCK_I))](
                w, s, d, g, gq, gs, O, I, K, DEMODULATE=demodulate, BLOCK_O=_BLOCK_O, BLOCK_I=_BLOCK_I)
    return gw, gs
