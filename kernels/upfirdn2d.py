"""Triton kernel for upfirdn2d; the semantics are those of Upfirdn2dParams in csrc/params.h.

  y[n, c, oy, ox] = gain * sum_{ky, kx} w[ky][kx] * xup(oy * down_y + ky - pad_y0,
                                                        ox * down_x + kx - pad_x0)

xup is x with up - 1 zeros inserted after every sample; w is f flipped unless flip_filter.

Polyphase: of the fh x fw taps, only those landing on a real sample (not an inserted zero)
contribute, i.e. ky with (oy * down_y + ky - pad_y0) % up_y == 0. With up_y constant, those are
ky = phase + t * up_y, so a program loops over ceil(fh / up_y) taps instead of fh, and likewise
along x. The row phase only depends on oy modulo up_y / gcd(up_y, down_y), so each program takes
the output rows of one residue class: its row phase is a scalar and every vertical tap is one
uniform branch. Along x the phase is per column, so the taps' weights are a small per-column
gather from the filter, shared by all rows and channels of the tile.

A program computes a (BLOCK_C, BLOCK_H, BLOCK_W) tile of (channel, row, column) outputs of one
image. NCHW tensors take BLOCK_C = 1 unless the planes are small; channels_last tensors take wide
channel blocks so that loads and stores run along the contiguous channel dimension.
"""

import contextlib
import math

import torch
import triton
import triton.language as tl

# torch.compile traces a kernel launch only through wrap_triton (the kernels run as
# torch.library.triton_op operators); in eager mode it launches the kernel directly.
_launch = getattr(torch.library, "wrap_triton", lambda kernel: kernel)

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Up to this many taps per output the filter loops are fully unrolled; beyond, filter rows
# become a runtime loop so that code size and live registers stay bounded.
_MAX_UNROLLED_TAPS = 16


@triton.jit
def _filter_row(acc, ty, phy, iy0, x_base, row_ok0, ix0, phx, col_ok0, f_ptr, in_h, in_w, sxh, sxw,
                UP_X: tl.constexpr, UP_Y: tl.constexpr, FH: tl.constexpr, FW: tl.constexpr,
                FLIP: tl.constexpr):
    """Adds the taps of vertical tap index ty (filter row ky = phy + ty * UP_Y) to acc."""
    ky = phy + ty * UP_Y
    if ky < FH:  # uniform per program: a tap past the filter is skipped, not masked
        iy = iy0 + ty
        row_ok = row_ok0 & ((iy >= 0) & (iy < in_h))[None, :, None]
        row_ptr = x_base + iy[None, :, None] * sxh
        if FLIP:
            f_row = f_ptr + ky * FW
        else:
            f_row = f_ptr + (FH - 1 - ky) * FW
        for tx in tl.static_range((FW + UP_X - 1) // UP_X):
            ix = ix0 + tx
            col_ok = col_ok0 & (ix >= 0) & (ix < in_w)
            if UP_X == 1:
                # Same tap for every column: one scalar weight.
                if FLIP:
                    wv = tl.load(f_row + tx)
                else:
                    wv = tl.load(f_row + (FW - 1 - tx))
            else:
                kx = phx + tx * UP_X  # in [0, FW) whenever the tap exists
                if FLIP:
                    f_col = f_row + kx
                else:
                    f_col = f_row + (FW - 1 - kx)
                if FW % UP_X == 0:
                    w = tl.load(f_col)  # every phase has exactly FW / UP_X taps
                else:
                    tap_ok = kx < FW
                    w = tl.load(f_col, mask=tap_ok, other=0)
                    col_ok = col_ok & tap_ok
                wv = w[None, None, :]
            v = tl.load(row_ptr + ix[None, None, :] * sxw, mask=row_ok & col_ok[None, None, :], other=0)
            acc += v.to(acc.dtype) * wv
    return acc


@triton.jit
def _upfirdn2d_kernel(
    x_ptr, f_ptr, y_ptr,
    channels, in_h, in_w, out_h, out_w,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    pad_x0, pad_y0,
    gain: tl.float64,
    c_tiles, h_tiles, w_tiles,
    UP_X: tl.constexpr, UP_Y: tl.constexpr, DOWN_X: tl.constexpr, DOWN_Y: tl.constexpr,
    FH: tl.constexpr, FW: tl.constexpr, FLIP: tl.constexpr, ROW_PERIOD: tl.constexpr,
    UNROLL_Y: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, INDEX64: tl.constexpr,
):
    # One flat grid (no 65535 limit on axes 1/2): image, channel tile, row class, row tile,
    # column tile, fastest last.
    pid = tl.program_id(0)
    tw = pid % w_tiles
    t = pid // w_tiles
    th = t % h_tiles
    t = t // h_tiles
    ry = t % ROW_PERIOD
    t = t // ROW_PERIOD
    tc = t % c_tiles
    n = t // c_tiles

    cc = tc * BLOCK_C + tl.arange(0, BLOCK_C)                      # channels      [BC]
    oy = ry + ROW_PERIOD * (th * BLOCK_H + tl.arange(0, BLOCK_H))  # output rows   [BH]
    ox = tw * BLOCK_W + tl.arange(0, BLOCK_W)                      # output cols   [BW]
    if INDEX64:
        cc = cc.to(tl.int64)
        oy = oy.to(tl.int64)
        ox = ox.to(tl.int64)
    c_ok = cc < channels
    oy_ok = oy < out_h
    ox_ok = ox < out_w

    # Row phase, uniform over the residue class: the first tap ky on a real sample. Integer
    # % truncates toward zero, hence the + UP_Y before the second %.
    if UP_Y == 1:
        phy = 0
        iy0 = oy * DOWN_Y - pad_y0
    else:
        phy = ((pad_y0 - ry * DOWN_Y) % UP_Y + UP_Y) % UP_Y
        iy0 = (oy * DOWN_Y - pad_y0 + phy) // UP_Y  # exact division, so truncation is fine
    # Column phase, per output column.
    if UP_X == 1:
        phx = 0
        ix0 = ox * DOWN_X - pad_x0
    else:
        phx = ((pad_x0 - ox * DOWN_X) % UP_X + UP_X) % UP_X
        ix0 = (ox * DOWN_X - pad_x0 + phx) // UP_X

    x_base = x_ptr + n.to(tl.int64) * sxn + cc[:, None, None] * sxc  # [BC, 1, 1]
    row_ok0 = c_ok[:, None, None] & oy_ok[None, :, None]
    acc = tl.zeros((BLOCK_C, BLOCK_H, BLOCK_W), dtype=f_ptr.dtype.element_ty)
    if UNROLL_Y:
        for ty in tl.static_range((FH + UP_Y - 1) // UP_Y):
            acc = _filter_row(acc, ty, phy, iy0, x_base, row_ok0, ix0, phx, ox_ok, f_ptr, in_h, in_w,
                              sxh, sxw, UP_X, UP_Y, FH, FW, FLIP)
    else:
        # Large filters: a loop over filter rows keeps the number of loads in flight (and the
        # registers holding them) to one row of taps.
        for ty in tl.range(0, (FH + UP_Y - 1) // UP_Y):
            acc = _filter_row(acc, ty, phy, iy0, x_base, row_ok0, ix0, phx, ox_ok, f_ptr, in_h, in_w,
                              sxh, sxw, UP_X, UP_Y, FH, FW, FLIP)

    acc = acc * tl.full((), gain, acc.dtype)
    y_ptrs = (y_ptr + n.to(tl.int64) * syn + cc[:, None, None] * syc
              + oy[None, :, None] * syh + ox[None, None, :] * syw)
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=row_ok0 & ox_ok[None, None, :])


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _max_offset(t: torch.Tensor) -> int:
    return sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()))


def _tile(channels: int, rows: int, cols: int, channels_last: bool):
    """(BLOCK_C, BLOCK_H, BLOCK_W, num_warps): about 1024 outputs per program, laid out along
    the output's contiguous dimension first."""
    target = 1024
    if channels_last:
        bc = min(_next_pow2(channels), 64)
        bw = min(_next_pow2(cols), max(1, target // bc))
        bh = min(_next_pow2(rows), max(1, target // (bc * bw)))
    else:
        bw = min(_next_pow2(cols), 64)
        bh = min(_next_pow2(rows), max(1, target // bw))
        # Small planes: stack channels (adjacent in memory for NCHW) rather than idle lanes.
        bc = min(_next_pow2(channels), max(1, target // (bw * bh)))
    num_warps = max(1, min(8, (bc * bh * bw) // 128))  # about 4 outputs per thread
    return bc, bh, bw, num_warps


def _device_guard(t: torch.Tensor):
    # Triton launches on the current CUDA device; make it the tensor's.
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def upfirdn2d(x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip_filter, gain):
    """Upsample (zero insertion), pad (negative = crop), correlate with the 2-D filter f
    (flipped unless flip_filter), multiply by gain and downsample, in one pass.

    x: (N, C, H, W) float16/bfloat16/float32/float64, any strides. f: contiguous (fh, fw)
    float32 (float64 for float64 x) on x's device. Returns (N, C, out_h, out_w) in x's dtype,
    channels_last when x is channels_last, contiguous otherwise.
    """
    assert x.dim() == 4 and x.dtype in _DTYPES, f"x must be 4-D float, got {x.dtype} {tuple(x.shape)}"
    assert f.dim() == 2 and f.is_contiguous() and f.device == x.device
    assert f.dtype == (torch.float64 if x.dtype == torch.float64 else torch.float32)
    up_x, up_y, down_x, down_y = int(up_x), int(up_y), int(down_x), int(down_y)
    pad_x0, pad_x1, pad_y0, pad_y1 = int(pad_x0), int(pad_x1), int(pad_y0), int(pad_y1)
    assert min(up_x, up_y, down_x, down_y) >= 1
    n, c, in_h, in_w = x.shape
    fh, fw = f.shape
    assert fh >= 1 and fw >= 1
    out_h = (in_h * up_y + pad_y0 + pad_y1 - fh) // down_y + 1
    out_w = (in_w * up_x + pad_x0 + pad_x1 - fw) // down_x + 1
    assert out_h >= 1 and out_w >= 1, "empty output"

    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = torch.empty((n, c, out_h, out_w), dtype=x.dtype, device=x.device, memory_format=fmt)
    if y.numel() == 0:
        return y
    if x.numel() == 0:
        return y.zero_()

    row_period = up_y // math.gcd(up_y, down_y)
    rows_per_class = triton.cdiv(out_h, row_period)
    bc, bh, bw, num_warps = _tile(c, rows_per_class, out_w, channels_last)
    c_tiles = triton.cdiv(c, bc)
    h_tiles = triton.cdiv(rows_per_class, bh)
    w_tiles = triton.cdiv(out_w, bw)
    programs = n * c_tiles * row_period * h_tiles * w_tiles
    assert programs < 2**31, "too many tiles"
    # 32-bit offsets unless an element that is actually accessed lies past 2**31 - 1 (masked
    # lanes may compute wrapped offsets; they are never dereferenced).
    index64 = max(_max_offset(x), _max_offset(y)) >= 2**31 - 1
    with _device_guard(x):
        _launch(_upfirdn2d_kernel)[(programs,)](
            x, f, y,
            c, in_h, in_w, out_h, out_w,
            *x.stride(), *y.stride(),
            pad_x0, pad_y0, float(gain),
            c_tiles, h_tiles, w_tiles,
            UP_X=up_x, UP_Y=up_y, DOWN_X=down_x, DOWN_Y=down_y, FH=fh, FW=fw,
            FLIP=bool(flip_filter), ROW_PERIOD=row_period,
            UNROLL_Y=triton.cdiv(fh, up_y) * triton.cdiv(fw, up_x) <= _MAX_UNROLLED_TAPS,
            BLOCK_C=bc, BLOCK_H=bh, BLOCK_W=bw, INDEX64=index64,
            num_warps=num_warps,
        )
    return y
