// upfirdn2d on the CPU: polyphase FIR filtering with OpenMP.
//
// Only the work the definition really needs is done: zero-inserted samples are never
// multiplied (for each output phase only the taps that land on real input samples are used)
// and with down > 1 only the kept outputs are computed.
//
// Per axis, outputs split into P = up / gcd(up, down) phases. All outputs of one phase use the
// same taps, and consecutive outputs of a phase read inputs S = down / gcd(up, down) apart.
// Three loop orders keep the innermost loop on contiguous memory so that it vectorises:
//  * planar (NCHW and any other strides): a work item is a band of output rows of a few
//    planes. It first stages the input rows it needs into a zero-padded scratch, each row split
//    into S sub-rows, so that every tap reads unit-stride data and the inner loops need no
//    bounds checks. Each (row phase, column phase) pair is then one 2-D multi-tap FIR, with
//    unrolled kernels for small tap grids (the 4-tap up = 2 / down = 2 cases among them).
//  * channels-last (C stride 1): a work item is an output row; each output pixel is a sum of
//    whole channel vectors, so the inner loop runs over channels.
//  * tiled (planar layout, very short output rows): a block of channels is transposed into a
//    channels-last tile, filtered channels-last, and transposed back.
//  * separable channels-last (C stride 1, filter of rank 1, e.g. StyleGAN2's [1, 3, 3, 1]
//    outer product): per output row, a vertical pass over whole input rows into a zero-padded
//    staging row, then a horizontal pass into the output row; fh + fw multiply-adds per output
//    instead of fh * fw. Its row kernels are compiled per instruction set (isa.h).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "isa.h"
#include "kernels.h"

namespace genmix {
namespace cpu {
namespace {

int64_t pos_mod(int64_t a, int64_t m) {
    const int64_t r = a % m;
    return r < 0 ? r + m : r;
}

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Taps summed by one pass of the inner kernel. Eight source pointers plus the destination
// still fit in general-purpose registers; longer tap lists are split into several passes.
constexpr int kMaxPassTaps = 8;

// dst[r][i] (+)= sum_t w[t] * src[t][r][i] for `rows` rows of `n` outputs. NT is a
// compile-time constant so the tap loop unrolls fully and the i loop vectorises with every
// source pointer held in a register. All sources advance by the same row stride.
template <typename T, int NT, bool ADD>
void fir_pass(T* dst, int64_t dst_rs, const T* const* src, int64_t src_rs, const T* w,
              int64_t rows, int64_t n) {
    const T* s[NT];
    T c[NT];
    for (int t = 0; t < NT; ++t) {
        s[t] = src[t];
        c[t] = w[t];
    }
    for (int64_t r = 0; r < rows; ++r) {
        T* __restrict d = dst + r * dst_rs;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
            T acc = ADD ? d[i] + c[0] * s[0][i] : c[0] * s[0][i];
            for (int t = 1; t < NT; ++t) acc += c[t] * s[t][i];
            d[i] = acc;
        }
        for (int t = 0; t < NT; ++t) s[t] += src_rs;
    }
}

template <typename T, bool ADD>
void fir_pass_n(T* dst, int64_t dst_rs, const T* const* src, int64_t src_rs, const T* w,
                int64_t rows, int64_t n, int nt) {
    switch (nt) {
        case 1: fir_pass<T, 1, ADD>(dst, dst_rs, src, src_rs, w, rows, n); break;
        case 2: fir_pass<T, 2, ADD>(dst, dst_rs, src, src_rs, w, rows, n); break;
        case 3: fir_pass<T, 3, ADD>(dst, dst_rs, src, src_rs, w, rows, n); break;
        case 4: fir_pass<T, 4, ADD>(dst, dst_rs, src, src_rs, w, rows, n); break;
        case 5: fir_pass<T, 5, ADD>(dst, dst_rs, src, src_rs, w, rows, n); break;
        case 6: fir_pass<T, 6, ADD>(dst, dst_rs, src, src_rs, w, rows, n); break;
        case 7: fir_pass<T, 7, ADD>(dst, dst_rs, src, src_rs, w, rows, n); break;
        default: fir_pass<T, 8, ADD>(dst, dst_rs, src, src_rs, w, rows, n); break;
    }
}

// Any number of taps (zero writes zeros). Long tap lists are cut into near-equal passes so no
// pass pays the destination load/store for just one or two taps.
template <typename T>
void fir(T* dst, int64_t dst_rs, const T* const* src, int64_t src_rs, const T* w, int64_t rows,
         int64_t n, int nt) {
    if (rows <= 0 || n <= 0) return;
    if (nt == 0) {
        for (int64_t r = 0; r < rows; ++r) std::fill_n(dst + r * dst_rs, n, T(0));
        return;
    }
    const int passes = (nt + kMaxPassTaps - 1) / kMaxPassTaps;
    int t0 = 0;
    for (int k = 0; k < passes; ++k) {
        const int t1 = static_cast<int>(static_cast<int64_t>(nt) * (k + 1) / passes);
        if (k == 0)
            fir_pass_n<T, false>(dst, dst_rs, src, src_rs, w, rows, n, t1 - t0);
        else
            fir_pass_n<T, true>(dst, dst_rs, src + t0, src_rs, w + t0, rows, n, t1 - t0);
        t0 = t1;
    }
}

// Polyphase decomposition of one axis. Output o = r + m * P (phase r) uses the filter taps
// k = k0[r] + j * up (j < nt[r]) and reads input i = base[r] + j + m * S for them.
struct Axis {
    int P = 1, S = 1, up = 1;
    std::vector<int> k0, nt;
    std::vector<int64_t> base, count;  // count[r]: outputs in phase r (non-increasing in r)
    // Input range touched by phases that have taps and outputs; lo > hi when there is none.
    int64_t lo = 0, hi = -1;
    // Inputs touched by the first output of every phase (one group of P outputs): lo .. lo+reach-1.
    int64_t reach = 0;
    int max_nt = 0;  // most taps of any phase

    Axis(int up_, int down, int pad0, int taps, int64_t out) : up(up_) {
        const int g = std::gcd(up_, down);
        P = up_ / g;
        S = down / g;
        k0.resize(P);
        nt.resize(P);
        base.resize(P);
        count.resize(P);
        lo = std::numeric_limits<int64_t>::max();
        hi = std::numeric_limits<int64_t>::min();
        reach = std::numeric_limits<int64_t>::min();
        for (int r = 0; r < P; ++r) {
            // Taps that meet a real (non-inserted) sample: (r*down + k - pad0) % up == 0.
            k0[r] = static_cast<int>(pos_mod(static_cast<int64_t>(pad0) - int64_t(r) * down, up_));
            nt[r] = k0[r] < taps ? (taps - 1 - k0[r]) / up_ + 1 : 0;
            base[r] = (int64_t(r) * down + k0[r] - pad0) / up_;  // exact division
            count[r] = r < out ? (out - r + P - 1) / P : 0;
            max_nt = std::max(max_nt, nt[r]);
            if (nt[r] > 0 && count[r] > 0) {
                lo = std::min(lo, base[r]);
                hi = std::max(hi, base[r] + nt[r] - 1 + (count[r] - 1) * S);
                reach = std::max(reach, base[r] + nt[r]);
            }
        }
        if (lo > hi) {
            lo = 0;
            hi = -1;
            reach = 0;
        } else {
            reach -= lo;
        }
    }
    bool any() const { return lo <= hi; }
};

// Correlation weights with the gain folded in, so the inner loops do one multiply per tap.
template <typename T>
std::vector<T> correlation_weights(const T* f, const Upfirdn2dParams& p) {
    const int fh = p.filter_h, fw = p.filter_w;
    std::vector<T> w(static_cast<size_t>(fh) * fw);
    const T gain = static_cast<T>(p.gain);
    for (int ky = 0; ky < fh; ++ky)
        for (int kx = 0; kx < fw; ++kx)
            w[ky * fw + kx] = gain * (p.flip_filter ? f[ky * fw + kx]
                                                    : f[(fh - 1 - ky) * fw + (fw - 1 - kx)]);
    return w;
}

// Below this many multiply-adds a call stays on the calling thread: waking the team costs more.
constexpr int64_t kParallelWork = 1 << 15;

template <typename T>
void fill_output_zero(T* y, const Upfirdn2dParams& p) {
    const int64_t planes = p.batch * p.channels;
    const int64_t* os = p.out_stride;
#pragma omp parallel for schedule(static) if (planes * p.out_h * p.out_w > kParallelWork)
    for (int64_t pl = 0; pl < planes; ++pl) {
        T* yp = y + (pl / p.channels) * os[0] + (pl % p.channels) * os[1];
        for (int64_t oy = 0; oy < p.out_h; ++oy)
            for (int64_t ox = 0; ox < p.out_w; ++ox) yp[oy * os[2] + ox * os[3]] = T(0);
    }
}

// ---------------------------------------------------------------------------------------------
// Planar path.

// Largest per-axis tap count with an unrolled grid kernel (4 covers 4-tap filters, up to 8 taps
// with up = 2, and 4-tap filters with any down).
constexpr int kMaxGrid = 4;

// One (row phase, column phase) pair as a grid of taps: NY consecutive staged rows (tap_rs
// apart) times NX column offsets. All NY * NX taps are summed in one pass, so each output is
// written once. Loops over `planes` staged planes and `rows` output rows of `n` outputs.
template <typename T, int NY, int NX>
void grid_pass(T* dst, int64_t dst_rs, int64_t dst_ps, const T* src, int64_t tap_rs,
               int64_t src_rs, int64_t src_ps, const int64_t* xoff, const T* w, int64_t planes,
               int64_t rows, int64_t n) {
    constexpr int K = NY * NX;
    T c[K];
    int64_t o[K];
    for (int t = 0; t < NY; ++t)
        for (int j = 0; j < NX; ++j) {
            c[t * NX + j] = w[t * NX + j];
            o[t * NX + j] = t * tap_rs + xoff[j];
        }
    for (int64_t q = 0; q < planes; ++q)
        for (int64_t r = 0; r < rows; ++r) {
            const T* s = src + q * src_ps + r * src_rs;
            T* __restrict d = dst + q * dst_ps + r * dst_rs;
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) {
                T acc = c[0] * s[o[0] + i];
                for (int k = 1; k < K; ++k) acc += c[k] * s[o[k] + i];
                d[i] = acc;
            }
        }
}

// Two column phases (up_x / gcd == 2, e.g. up = 2) with equal tap counts, written interleaved
// straight into the output row: no phase buffer and no second pass over the output.
template <typename T, int NY, int NX>
void grid_pass2(T* dst, int64_t dst_rs, int64_t dst_ps, const T* src, int64_t tap_rs,
                int64_t src_rs, int64_t src_ps, const int64_t* xoff0, const int64_t* xoff1,
                const T* w0, const T* w1, int64_t planes, int64_t rows, int64_t n) {
    constexpr int K = NY * NX;
    T c0[K], c1[K];
    int64_t o0[K], o1[K];
    for (int t = 0; t < NY; ++t)
        for (int j = 0; j < NX; ++j) {
            c0[t * NX + j] = w0[t * NX + j];
            c1[t * NX + j] = w1[t * NX + j];
            o0[t * NX + j] = t * tap_rs + xoff0[j];
            o1[t * NX + j] = t * tap_rs + xoff1[j];
        }
    for (int64_t q = 0; q < planes; ++q)
        for (int64_t r = 0; r < rows; ++r) {
            const T* s = src + q * src_ps + r * src_rs;
            T* __restrict d = dst + q * dst_ps + r * dst_rs;
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) {
                T a = c0[0] * s[o0[0] + i];
                T b = c1[0] * s[o1[0] + i];
                for (int k = 1; k < K; ++k) {
                    a += c0[k] * s[o0[k] + i];
                    b += c1[k] * s[o1[k] + i];
                }
                d[2 * i] = a;
                d[2 * i + 1] = b;
            }
        }
}

template <typename T>
using GridFn = void (*)(T*, int64_t, int64_t, const T*, int64_t, int64_t, int64_t, const int64_t*,
                        const T*, int64_t, int64_t, int64_t);
template <typename T>
using Grid2Fn = void (*)(T*, int64_t, int64_t, const T*, int64_t, int64_t, int64_t,
                         const int64_t*, const int64_t*, const T*, const T*, int64_t, int64_t,
                         int64_t);

// Kernel for (ny, nx) taps, or null when they are outside the unrolled range.
template <typename T, int NY = 1, int NX = 1>
GridFn<T> pick_grid(int ny, int nx) {
    if constexpr (NY > kMaxGrid) {
        return nullptr;
    } else if constexpr (NX > kMaxGrid) {
        return pick_grid<T, NY + 1, 1>(ny, nx);
    } else {
        return ny == NY && nx == NX ? &grid_pass<T, NY, NX> : pick_grid<T, NY, NX + 1>(ny, nx);
    }
}

template <typename T, int NY = 1, int NX = 1>
Grid2Fn<T> pick_grid2(int ny, int nx) {
    if constexpr (NY > kMaxGrid) {
        return nullptr;
    } else if constexpr (NX > kMaxGrid) {
        return pick_grid2<T, NY + 1, 1>(ny, nx);
    } else {
        return ny == NY && nx == NX ? &grid_pass2<T, NY, NX> : pick_grid2<T, NY, NX + 1>(ny, nx);
    }
}

struct SubRow {
    int64_t dst, src, len, step;
};

// Gathers one staged sub-row. The unit-stride and stride-2 (down = 2) cases get loops with a
// constant step so they vectorise; rows here are short, so no library call either.
template <typename T>
void copy_strided(T* __restrict d, const T* s, int64_t len, int64_t step) {
    if (step == 1) {
#pragma omp simd
        for (int64_t i = 0; i < len; ++i) d[i] = s[i];
    } else if (step == 2) {
#pragma omp simd
        for (int64_t i = 0; i < len; ++i) d[i] = s[2 * i];
    } else {
        for (int64_t i = 0; i < len; ++i) d[i] = s[i * step];
    }
}

template <typename T>
void upfirdn2d_planar(const T* x, const T* wc, T* y, const Upfirdn2dParams& p, const Axis& ax,
                      const Axis& ay) {
    const int64_t N = p.batch, C = p.channels;
    const int64_t* is = p.in_stride;
    const int64_t* os = p.out_stride;
    const int fw = p.filter_w;

    // Staged row: S_x sub-rows of Ls elements; element (s, i) holds input column
    // ax.lo + i * S_x + s, or zero outside the input. Columns outside [cx_lo, cx_hi] are only
    // ever zero, so they are written once when the scratch grows and then never again.
    const int64_t Sx = ax.S, Sy = ay.S;
    const int64_t sub_align = 64 / sizeof(T);
    const int64_t Ls = ((ax.hi - ax.lo) / Sx + 1 + sub_align - 1) / sub_align * sub_align;
    const int64_t RS = Sx * Ls;
    const int64_t cx_lo = std::max<int64_t>(ax.lo, 0), cx_hi = std::min<int64_t>(ax.hi, p.in_w - 1);

    // Offset in a staged row of tap j of column phase r (at output m = 0).
    std::vector<std::vector<int64_t>> off(ax.P);
    int max_xt = 0, max_yt = 0;
    for (int r = 0; r < ax.P; ++r) {
        for (int j = 0; j < ax.nt[r]; ++j) {
            const int64_t rel = ax.base[r] + j - ax.lo;
            off[r].push_back((rel % Sx) * Ls + rel / Sx);
        }
        max_xt = std::max(max_xt, ax.nt[r]);
    }
    for (int r = 0; r < ay.P; ++r) max_yt = std::max(max_yt, ay.nt[r]);
    const int max_taps = max_xt * max_yt;

    // Output rows come in groups of P_y (one per row phase). A work item is a band of G groups
    // of Q consecutive planes of one image; its staged input, Q * ((G - 1) * S_y + reach) rows,
    // is sized to stay in L2. Small planes are batched (Q > 1) so per-call overheads amortise;
    // large planes are cut into bands (G < groups). Both shrink when there are too few items to
    // feed every thread.
    const int64_t groups = ay.count[0];
    const int64_t row_bytes = RS * int64_t(sizeof(T));
    const int64_t budget = 128 << 10;
    const int64_t plane_rows = (groups - 1) * Sy + ay.reach;
    int64_t G = groups, Q = 1;
    if (plane_rows * row_bytes > budget) {
        const int64_t budget_rows = std::max<int64_t>(1, budget / row_bytes);
        G = std::min(groups, std::max<int64_t>(1, (budget_rows - ay.reach) / Sy + 1));
    } else {
        Q = std::min(C, std::max<int64_t>(1, budget / (plane_rows * row_bytes)));
    }
    const int64_t want = 4 * int64_t(max_threads());
    auto count_items = [&] { return N * ((C + Q - 1) / Q) * ((groups + G - 1) / G); };
    while (count_items() < want && Q > 1) Q = (Q + 1) / 2;
    while (count_items() < want && G > 1) G = (G + 1) / 2;
    const int64_t cblocks = (C + Q - 1) / Q, bands = (groups + G - 1) / G;
    const int64_t items = N * cblocks * bands;

    // Per staged sub-row: where its valid columns go, where they come from (input column of
    // the first one) and how many there are. The same for every row, so computed once.
    std::vector<SubRow> subs;
    for (int64_t sub = 0; sub < Sx; ++sub) {
        const int64_t a = cx_lo - ax.lo - sub;
        const int64_t i_lo = a <= 0 ? 0 : (a + Sx - 1) / Sx;
        const int64_t i_hi = floor_div(cx_hi - ax.lo - sub, Sx);
        if (i_hi >= i_lo)
            subs.push_back({sub * Ls + i_lo, ax.lo + sub + i_lo * Sx, i_hi - i_lo + 1, Sx * is[3]});
    }
    const int64_t pb_rs = ax.count[0];  // phase buffer row stride (generic path)
    const int64_t work = N * C * p.out_h * p.out_w * std::max(1, max_taps);

#pragma omp parallel if (work > kParallelWork)
    {
        std::vector<T> stage;
        std::vector<T> pbuf;
        std::vector<const T*> src(max_taps);
        std::vector<T> w(max_taps), w0(max_taps), w1(max_taps);
        std::vector<int64_t> xo0(max_xt);

#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; ++item) {
            const int64_t n = item / (cblocks * bands);
            const int64_t cb = item / bands % cblocks, band = item % bands;
            const int64_t c0 = cb * Q, nq = std::min(Q, C - c0);
            const int64_t ga = band * G, gb = std::min(groups, ga + G);

            // Stage input rows iy_lo .. iy_lo + nrows - 1 of each plane; rows outside the input
            // are zero.
            const int64_t iy_lo = ay.lo + ga * Sy;
            const int64_t nrows = (gb - ga - 1) * Sy + ay.reach;
            const int64_t PS = nrows * RS;
            const size_t need = static_cast<size_t>(nq * PS);
            if (stage.size() < need) stage.resize(need, T(0));
            for (int64_t q = 0; q < nq; ++q) {
                const T* xp = x + n * is[0] + (c0 + q) * is[1];
                for (int64_t k = 0; k < nrows; ++k) {
                    const int64_t iy = iy_lo + k;
                    T* d = stage.data() + q * PS + k * RS;
                    if (iy < 0 || iy >= p.in_h) {
                        std::fill_n(d, RS, T(0));
                        continue;
                    }
                    const T* s = xp + iy * is[2];
                    for (const SubRow& sr : subs) copy_strided(d + sr.dst, s + sr.src * is[3], sr.len, sr.step);
                }
            }

            T* yb = y + n * os[0] + c0 * os[1];
            for (int ry = 0; ry < ay.P; ++ry) {
                const int64_t rows = std::min(gb, ay.count[ry]) - ga;
                if (rows <= 0) continue;
                const int ny = ay.nt[ry];
                // Staged row of filter row 0 of this phase for the band's first output row.
                const T* sb = stage.data() + (ny > 0 ? (ay.base[ry] - ay.lo) * RS : 0);
                T* yr = yb + (ry + ga * ay.P) * os[2];
                const int64_t dst_rs = ay.P * os[2];
                auto weights = [&](int rx, T* out) {
                    for (int t = 0; t < ny; ++t)
                        for (int j = 0; j < ax.nt[rx]; ++j)
                            out[t * ax.nt[rx] + j] =
                                wc[(ay.k0[ry] + t * ay.up) * fw + ax.k0[rx] + j * ax.up];
                };

                if (ax.P == 1 && os[3] == 1 && ny > 0 && ax.nt[0] > 0) {
                    if (GridFn<T> fn = pick_grid<T>(ny, ax.nt[0])) {
                        weights(0, w0.data());
                        fn(yr, dst_rs, os[1], sb, RS, Sy * RS, PS, off[0].data(), w0.data(), nq,
                           rows, ax.count[0]);
                        continue;
                    }
                }
                if (ax.P == 2 && os[3] == 1 && ny > 0 && ax.nt[0] > 0 && ax.nt[0] == ax.nt[1] &&
                    ax.count[1] > 0) {
                    Grid2Fn<T> fn2 = pick_grid2<T>(ny, ax.nt[0]);
                    GridFn<T> fn1 = pick_grid<T>(ny, ax.nt[0]);
                    if (fn2 && fn1) {
                        weights(0, w0.data());
                        weights(1, w1.data());
                        const int64_t n1 = ax.count[1];
                        fn2(yr, dst_rs, os[1], sb, RS, Sy * RS, PS, off[0].data(), off[1].data(),
                            w0.data(), w1.data(), nq, rows, n1);
                        if (ax.count[0] > n1) {  // odd width: the last output is phase 0
                            for (int j = 0; j < ax.nt[0]; ++j) xo0[j] = off[0][j] + n1;
                            fn1(yr + 2 * n1, dst_rs, os[1], sb, RS, Sy * RS, PS, xo0.data(),
                                w0.data(), nq, rows, 1);
                        }
                        continue;
                    }
                }

                // Generic: any tap counts, phases and output strides. Each column phase is a
                // list of taps summed in passes into a phase buffer (or straight into y), then
                // the phases are interleaved into the output rows.
                const bool direct = ax.P == 1 && os[3] == 1;
                if (!direct && pbuf.size() < static_cast<size_t>(ax.P * rows * pb_rs))
                    pbuf.resize(static_cast<size_t>(ax.P * rows * pb_rs));
                for (int64_t q = 0; q < nq; ++q) {
                    T* yq = yr + q * os[1];
                    for (int rx = 0; rx < ax.P; ++rx) {
                        const int64_t cnt = ax.count[rx];
                        if (cnt == 0) continue;
                        int nt = 0;
                        for (int t = 0; t < ny; ++t) {
                            const T* row = sb + q * PS + t * RS;
                            const T* wrow = wc + (ay.k0[ry] + t * ay.up) * fw + ax.k0[rx];
                            for (int j = 0; j < ax.nt[rx]; ++j) {
                                src[nt] = row + off[rx][j];
                                w[nt] = wrow[j * ax.up];
                                ++nt;
                            }
                        }
                        if (direct)
                            fir(yq, dst_rs, src.data(), Sy * RS, w.data(), rows, cnt, nt);
                        else
                            fir(pbuf.data() + rx * rows * pb_rs, pb_rs, src.data(), Sy * RS,
                                w.data(), rows, cnt, nt);
                    }
                    if (direct) continue;
                    for (int64_t k = 0; k < rows; ++k) {
                        T* yo = yq + k * dst_rs;
                        for (int rx = 0; rx < ax.P; ++rx) {
                            const T* a = pbuf.data() + (rx * rows + k) * pb_rs;
                            const int64_t step = ax.P * os[3];
                            T* yp = yo + rx * os[3];
                            for (int64_t m = 0; m < ax.count[rx]; ++m) yp[m * step] = a[m];
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Channels-last loop order: every tap contributes a whole channel vector, so the inner loop
// runs over contiguous channels whatever the filter and factors.

template <typename T>
struct ClScratch {
    std::vector<const T*> src;
    std::vector<T> w, cbuf;
    std::vector<int64_t> iys;
    std::vector<const T*> wys;

    ClScratch(const Axis& ax, const Axis& ay, int64_t C)
        : src(ax.max_nt * ay.max_nt), w(ax.max_nt * ay.max_nt), cbuf(C), iys(ay.max_nt),
          wys(ay.max_nt) {}
};

// Input window held in memory: rows [y0, y1) and columns [x0, x1) of the input; the pixel
// (y0, x0) is at the window's base pointer.
struct Window {
    int64_t y0, y1, x0, x1;
};

// Output row oy of one image. xw: the input window, channels at stride 1 and pixels at
// is_h / is_w; yrow: the output row, pixels at os_w and channels at os_c.
template <typename T>
void cl_row(const T* xw, int64_t is_h, int64_t is_w, const Window& win, T* yrow, int64_t os_w,
            int64_t os_c, int64_t C, int64_t oy, const T* wc, const Upfirdn2dParams& p,
            const Axis& ax, const Axis& ay, ClScratch<T>& s) {
    const int fw = p.filter_w;
    const int ry = static_cast<int>(oy % ay.P);
    const int64_t my = oy / ay.P;
    // Filter rows that meet real input rows.
    int nr = 0;
    for (int t = 0; t < ay.nt[ry]; ++t) {
        const int64_t iy = ay.base[ry] + t + my * ay.S;
        if (iy < win.y0 || iy >= win.y1) continue;
        s.iys[nr] = iy - win.y0;
        s.wys[nr] = wc + (ay.k0[ry] + t * ay.up) * fw;
        ++nr;
    }
    for (int64_t ox = 0; ox < p.out_w; ++ox) {
        const int rx = static_cast<int>(ox % ax.P);
        const int64_t mx = ox / ax.P;
        int nt = 0;
        for (int j = 0; j < ax.nt[rx]; ++j) {
            const int64_t ix = ax.base[rx] + j + mx * ax.S;
            if (ix < win.x0 || ix >= win.x1) continue;
            const int kx = ax.k0[rx] + j * ax.up;
            for (int t = 0; t < nr; ++t) {
                s.src[nt] = xw + s.iys[t] * is_h + (ix - win.x0) * is_w;
                s.w[nt] = s.wys[t][kx];
                ++nt;
            }
        }
        T* dst = yrow + ox * os_w;
        if (os_c == 1) {
            fir(dst, 0, s.src.data(), 0, s.w.data(), 1, C, nt);
        } else {
            fir(s.cbuf.data(), 0, s.src.data(), 0, s.w.data(), 1, C, nt);
            for (int64_t c = 0; c < C; ++c) dst[c * os_c] = s.cbuf[c];
        }
    }
}

// Input with C stride 1 (channels_last): one work item per output row.
template <typename T>
void upfirdn2d_channels_last(const T* x, const T* wc, T* y, const Upfirdn2dParams& p,
                             const Axis& ax, const Axis& ay) {
    const int64_t* is = p.in_stride;
    const int64_t* os = p.out_stride;
    const int64_t items = p.batch * p.out_h;
    const int64_t work = items * p.out_w * p.channels * ax.max_nt * ay.max_nt;
    const Window win{0, p.in_h, 0, p.in_w};

#pragma omp parallel if (work > kParallelWork)
    {
        ClScratch<T> scratch(ax, ay, p.channels);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; ++item) {
            const int64_t n = item / p.out_h, oy = item % p.out_h;
            cl_row(x + n * is[0], is[2], is[3], win, y + n * os[0] + oy * os[2], os[3], os[1],
                   p.channels, oy, wc, p, ax, ay, scratch);
        }
    }
}

// Small planes in a planar layout: rows of a handful of outputs leave the vector units mostly
// idle and spend their time on per-row overhead. Instead, a block of channels is gathered into
// a channels-last tile, filtered with the channels-last loop (vectorised across channels) and
// scattered back.
constexpr int64_t kTiledMaxWidth = 8;
constexpr int64_t kTileBytes = 128 << 10;

// The input window the outputs read (clipped to the input); only it is gathered into a tile.
Window input_window(const Upfirdn2dParams& p, const Axis& ax, const Axis& ay) {
    return {std::max<int64_t>(ay.lo, 0), std::min<int64_t>(ay.hi + 1, p.in_h),
            std::max<int64_t>(ax.lo, 0), std::min<int64_t>(ax.hi + 1, p.in_w)};
}

template <typename T>
void upfirdn2d_tiled(const T* x, const T* wc, T* y, const Upfirdn2dParams& p, const Axis& ax,
                     const Axis& ay) {
    const int64_t N = p.batch, C = p.channels;
    const int64_t* is = p.in_stride;
    const int64_t* os = p.out_stride;
    const Window win = input_window(p, ax, ay);
    const int64_t wh = win.y1 - win.y0, ww = win.x1 - win.x0;
    const int64_t in_px = wh * ww, out_px = p.out_h * p.out_w;
    // Channels per tile: both tiles within ~128 KiB, a multiple of 8 (whole vectors).
    int64_t Q = kTileBytes / ((in_px + out_px) * int64_t(sizeof(T)));
    Q = std::max<int64_t>(8, Q / 8 * 8);
    Q = std::min(Q, C);
    const int64_t want = 4 * int64_t(max_threads());
    while (N * ((C + Q - 1) / Q) < want && Q > 8) Q = std::max<int64_t>(8, Q / 2);
    const int64_t cblocks = (C + Q - 1) / Q;
    const int64_t items = N * cblocks;
    const int64_t work = N * C * out_px * ax.max_nt * ay.max_nt;

#pragma omp parallel if (work > kParallelWork)
    {
        ClScratch<T> scratch(ax, ay, Q);
        std::vector<T> tin(static_cast<size_t>(in_px * Q)), tout(static_cast<size_t>(out_px * Q));
#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; ++item) {
            const int64_t n = item / cblocks, c0 = item % cblocks * Q;
            const int64_t nq = std::min(Q, C - c0);
            // Plane by plane: the planar side is read / written sequentially, the tile side
            // (small enough for L1 / L2) takes the strided accesses.
            for (int64_t q = 0; q < nq; ++q) {
                const T* xp = x + n * is[0] + (c0 + q) * is[1] + win.y0 * is[2] + win.x0 * is[3];
                T* t = tin.data() + q;
                for (int64_t iy = 0; iy < wh; ++iy)
                    for (int64_t ix = 0; ix < ww; ++ix)
                        t[(iy * ww + ix) * Q] = xp[iy * is[2] + ix * is[3]];
            }
            for (int64_t oy = 0; oy < p.out_h; ++oy)
                cl_row(tin.data(), ww * Q, Q, win, tout.data() + oy * p.out_w * Q, Q, 1, nq, oy,
                       wc, p, ax, ay, scratch);
            for (int64_t q = 0; q < nq; ++q) {
                T* yp = y + n * os[0] + (c0 + q) * os[1];
                const T* t = tout.data() + q;
                for (int64_t oy = 0; oy < p.out_h; ++oy)
                    for (int64_t ox = 0; ox < p.out_w; ++ox)
                        yp[oy * os[2] + ox * os[3]] = t[(oy * p.out_w + ox) * Q];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Separable channels-last path.

// Most taps per phase and axis the row kernels take (filters are a handful of taps).
constexpr int kSepMaxTaps = 64;

// Everything the row kernels need, for one call; phase tables point into the Axis objects.
template <typename T>
struct SepPlan {
    const T* x = nullptr;
    T* y = nullptr;
    int64_t C = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
    const int64_t* in_stride = nullptr;
    const int64_t* out_stride = nullptr;
    int Py = 1, Sy = 1, up_y = 1, Px = 1, Sx = 1, up_x = 1;
    const int* k0_y = nullptr;
    const int* nt_y = nullptr;
    const int64_t* base_y = nullptr;
    const int* k0_x = nullptr;
    const int* nt_x = nullptr;
    const int64_t* base_x = nullptr;
    const int64_t* count_x = nullptr;
    const T* wy = nullptr;  // vertical correlation taps (fh), carrying the gain
    const T* wx = nullptr;  // horizontal correlation taps (fw)
    int64_t x_lo = 0, x_hi = -1;  // staged input columns (may reach outside the input)
    int64_t cx0 = 0, cx1 = 0;     // staged columns that exist in the input: [cx0, cx1)
};

template <typename T>
using SepFn = void (*)(const SepPlan<T>&, int64_t, int64_t, T*, T*);

}  // namespace

#ifdef GENMIX_MULTI_ISA
GENMIX_ISA_BEGIN_AVX512
namespace isa_avx512 {
using namespace genmix::cpu;
#include "upfirdn2d_separable.inc"
}  // namespace isa_avx512
GENMIX_ISA_END
GENMIX_ISA_BEGIN_AVX2
namespace isa_avx2 {
using namespace genmix::cpu;
#include "upfirdn2d_separable.inc"
}  // namespace isa_avx2
GENMIX_ISA_END
#endif
namespace isa_baseline {
using namespace genmix::cpu;
#include "upfirdn2d_separable.inc"
}  // namespace isa_baseline

namespace {

template <typename T>
SepFn<T> pick_separable() {
#ifdef GENMIX_MULTI_ISA
    switch (cpu_isa()) {
        case kIsaAvx512: return &isa_avx512::sep_range<T>;
        case kIsaAvx2: return &isa_avx2::sep_range<T>;
        default: break;
    }
#endif
    return &isa_baseline::sep_range<T>;
}

// wc (fh x fw) as the outer product wy * wx, when it is one to rounding; false otherwise.
template <typename T>
bool split_separable(const std::vector<T>& wc, int fh, int fw, std::vector<T>& wy, std::vector<T>& wx) {
    size_t imax = 0;
    T amax = T(0);
    for (size_t i = 0; i < wc.size(); ++i) {
        const T a = wc[i] < T(0) ? -wc[i] : wc[i];
        if (a > amax) {
            amax = a;
            imax = i;
        }
    }
    if (!(amax > T(0)) || !(amax <= std::numeric_limits<T>::max())) return false;  // zero, inf, NaN
    const int i0 = static_cast<int>(imax) / fw, j0 = static_cast<int>(imax) % fw;
    wy.resize(fh);
    wx.resize(fw);
    const T pivot = wc[imax];
    for (int i = 0; i < fh; ++i) wy[i] = wc[i * fw + j0];
    for (int j = 0; j < fw; ++j) wx[j] = wc[i0 * fw + j] / pivot;
    const T tol = amax * T(16) * std::numeric_limits<T>::epsilon();
    for (int i = 0; i < fh; ++i)
        for (int j = 0; j < fw; ++j) {
            const T e = wy[i] * wx[j] - wc[i * fw + j];
            if (!((e < T(0) ? -e : e) <= tol)) return false;
        }
    return true;
}

// Channels-last input with a separable filter; false when the call does not qualify.
template <typename T>
bool upfirdn2d_separable(const T* x, const std::vector<T>& wc, T* y, const Upfirdn2dParams& p,
                         const Axis& ax, const Axis& ay) {
    if (ax.max_nt > kSepMaxTaps || ay.max_nt > kSepMaxTaps) return false;
    std::vector<T> wy, wx;
    if (!split_separable(wc, p.filter_h, p.filter_w, wy, wx)) return false;

    SepPlan<T> pl;
    pl.x = x;
    pl.y = y;
    pl.C = p.channels;
    pl.in_h = p.in_h;
    pl.in_w = p.in_w;
    pl.out_h = p.out_h;
    pl.out_w = p.out_w;
    pl.in_stride = p.in_stride;
    pl.out_stride = p.out_stride;
    pl.Py = ay.P;
    pl.Sy = ay.S;
    pl.up_y = ay.up;
    pl.Px = ax.P;
    pl.Sx = ax.S;
    pl.up_x = ax.up;
    pl.k0_y = ay.k0.data();
    pl.nt_y = ay.nt.data();
    pl.base_y = ay.base.data();
    pl.k0_x = ax.k0.data();
    pl.nt_x = ax.nt.data();
    pl.base_x = ax.base.data();
    pl.count_x = ax.count.data();
    pl.wy = wy.data();
    pl.wx = wx.data();
    pl.x_lo = ax.lo;
    pl.x_hi = ax.hi;
    pl.cx0 = std::max<int64_t>(ax.lo, 0);
    pl.cx1 = std::max(pl.cx0, std::min<int64_t>(ax.hi + 1, p.in_w));

    const SepFn<T> rows = pick_separable<T>();
    const int64_t items = p.batch * p.out_h;
    const int64_t C = p.channels;
    const size_t vlen = static_cast<size_t>((ax.hi - ax.lo + 1) * C);
    const bool dense_out = p.out_stride[1] == 1 && p.out_stride[3] == C;
    const int64_t work = items * C * (p.in_w * ay.max_nt + p.out_w * ax.max_nt);

#pragma omp parallel if (work > kParallelWork)
    {
        int nth = 1, tid = 0;
#ifdef _OPENMP
        nth = omp_get_num_threads();
        tid = omp_get_thread_num();
#endif
        // Contiguous runs of output rows per thread: neighbouring rows share input rows.
        const int64_t chunk = (items + nth - 1) / nth;
        const int64_t i0 = std::min(items, tid * chunk), i1 = std::min(items, i0 + chunk);
        if (i0 < i1) {
            std::vector<T> v(vlen, T(0));
            std::vector<T> o(dense_out ? 0 : static_cast<size_t>(p.out_w * C));
            rows(pl, i0, i1, v.data(), o.data());
        }
    }
    return true;
}

}  // namespace

template <typename T>
void upfirdn2d(const T* x, const T* f, T* y, const Upfirdn2dParams& p) {
    if (p.batch <= 0 || p.channels <= 0 || p.out_h <= 0 || p.out_w <= 0) return;
    const Axis ax(p.up_x, p.down_x, p.pad_x0, p.filter_w, p.out_w);
    const Axis ay(p.up_y, p.down_y, p.pad_y0, p.filter_h, p.out_h);
    // No output meets a real input sample (everything padded or cropped away).
    if (!ax.any() || !ay.any() || ax.hi < 0 || ax.lo >= p.in_w || ay.hi < 0 || ay.lo >= p.in_h) {
        fill_output_zero(y, p);
        return;
    }
    const std::vector<T> wc = correlation_weights(f, p);
    // Channels-last pays off once a channel vector is long enough to amortise the per-pixel
    // tap setup; for a few channels the planar path's strided staging is cheaper.
    const bool channels_last = p.in_stride[1] == 1 && p.in_stride[3] != 1 && p.channels >= 8;
    // Output rows of at most 8 samples are too short for the planar loops (measured: the tiled
    // path is 1.3-4x faster there, and slower beyond) unless a tile of 8 channels would not fit.
    const Window win = input_window(p, ax, ay);
    const int64_t tile_px = (win.y1 - win.y0) * (win.x1 - win.x0) + p.out_h * p.out_w;
    const bool tiled = p.channels >= 8 && p.out_w <= kTiledMaxWidth &&
                       tile_px * 8 * int64_t(sizeof(T)) <= kTileBytes;
    if (channels_last && upfirdn2d_separable(x, wc, y, p, ax, ay))
        return;
    if (channels_last)
        upfirdn2d_channels_last(x, wc.data(), y, p, ax, ay);
    else if (tiled)
        upfirdn2d_tiled(x, wc.data(), y, p, ax, ay);
    else
        upfirdn2d_planar(x, wc.data(), y, p, ax, ay);
}

template void upfirdn2d<float>(const float*, const float*, float*, const Upfirdn2dParams&);
template void upfirdn2d<double>(const double*, const double*, double*, const Upfirdn2dParams&);

}  // namespace cpu
}  // namespace genmix
