// Dirichlet sampling and batch mixing (mixup-style blends) on the CPU.
//
// sample_dirichlet: one Philox stream per row, rows in parallel; the numbers do not depend on
// the thread count because a row's stream is fixed by (seed, row) alone.
//
// mix_batch works in two phases:
//  1. per-sample weights (N tiny draws) and mixed labels, then one coefficient per (sample,
//     source) with the image scale folded in (w_s * scale, rounded once);
//  2. the image blend, a pure streaming pass: work items are (sample, chunk) pairs split
//     statically over the threads, and every inner loop is a plain elementwise loop with the
//     coefficients hoisted into registers, templated on the input/output element types so the
//     compiler vectorises loads, conversions and stores. Reading each source once and writing
//     the output once is the whole point: the unfused recipe makes several passes through
//     memory plus temporaries.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "random.h"

namespace genmix {
namespace cpu {
namespace {

// ------------------------------------------------------------------ float -> f16 / bf16 bits

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// IEEE binary16, round to nearest even. Branch-free (selects only, uniform shifts), so the
// mixing loops that call it still vectorise with plain SSE2.
inline uint16_t f32_to_f16(float f) {
    const uint32_t x = f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t a = x & 0x7FFFFFFFu;
    const int32_t sa = int32_t(a);  // a < 2^31: signed compares are exact and vectorise
    // Normal results: drop 13 mantissa bits, adding just under half an ulp plus the bit that
    // breaks ties towards even. A carry out of the mantissa correctly bumps the exponent, and
    // re-biasing the exponent (127 -> 15) is one subtraction on the shifted pattern.
    const uint32_t normal = ((a + 0x0FFFu + ((a >> 13) & 1u)) >> 13) - ((127u - 15u) << 10);
    // Subnormal results (|f| < 2^-14) are multiples of 2^-24. Adding 0.5 makes the FPU round
    // |f| to exactly that spacing, nearest-even, and the low bits of the sum are the half's
    // mantissa (2^-14 itself comes out as 0x400, the smallest normal, as it should).
    const uint32_t sub = f32_bits(bits_f32(a) + 0.5f) - 0x3F000000u;
    // The selects are written as masks: as ?: the compiler sinks the float add into a branch
    // and then may not if-convert it back (a speculated add could raise an FP flag), which
    // leaves the whole mixing loop scalar.
    const uint32_t is_sub = 0u - uint32_t(sa < 0x38800000);
    const uint32_t is_inf = 0u - uint32_t(sa >= 0x477FF000);  // >= 65520 rounds past 65504
    const uint32_t is_nan = 0u - uint32_t(sa > 0x7F800000);
    uint32_t h = (sub & is_sub) | (normal & ~is_sub);
    h = (0x7C00u & is_inf) | (h & ~is_inf);
    h = ((0x7E00u | ((a >> 13) & 0x3FFu)) & is_nan) | (h & ~is_nan);  // NaN stays quiet
    return uint16_t(sign | h);
}

// bfloat16 = the top half of a float, round to nearest even; overflow rounds to inf by the
// same carry. NaN is kept quiet explicitly (rounding could carry a NaN's payload into inf).
inline uint16_t f32_to_bf16(float f) {
    const uint32_t x = f32_bits(f);
    const uint32_t r = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
    const bool nan = int32_t(x & 0x7FFFFFFFu) > 0x7F800000;
    return uint16_t(nan ? ((x >> 16) | 0x0040u) : r);
}

// double -> float rounding to odd: an inexact result gets an odd last bit. A second rounding
// of that float to f16 / bf16 (far fewer bits) then equals rounding the double directly,
// which a plain double -> float -> half chain does not (it can create false ties).
inline float f64_to_f32_odd(double d) {
    const float f = float(d);
    uint32_t u = f32_bits(f);
    if (double(f) != d && d == d && (u & 1u) == 0) {
        // Step to the odd neighbour that lies towards d.
        const bool away = (d < 0 ? -d : d) > double(f < 0 ? -f : f);
        u = away ? u + 1 : u - 1;
    }
    return bits_f32(u);
}

// Output element types: the storage type and the conversion from the compute type.
template <DType OUT>
struct Out;
template <>
struct Out<DType::kF32> {
    using type = float;
    static float cvt(float v) { return v; }
    static float cvt(double v) { return float(v); }
};
template <>
struct Out<DType::kF64> {
    using type = double;
    static double cvt(float v) { return v; }
    static double cvt(double v) { return v; }
};
template <>
struct Out<DType::kF16> {
    using type = uint16_t;
    static uint16_t cvt(float v) { return f32_to_f16(v); }
    static uint16_t cvt(double v) { return f32_to_f16(f64_to_f32_odd(v)); }
};
template <>
struct Out<DType::kBF16> {
    using type = uint16_t;
    static uint16_t cvt(float v) { return f32_to_bf16(v); }
    static uint16_t cvt(double v) { return f32_to_bf16(f64_to_f32_odd(v)); }
};

// ------------------------------------------------------------------------------- sampling

// A work item of the blend: big enough to amortise the bookkeeping and stream through the
// prefetchers, small enough that short samples still split evenly over the threads.
constexpr int64_t kChunk = 16384;
// Accumulator block of the general (S != 2) path: stays in L1 between the source passes.
constexpr int64_t kBlock = 1024;
// Below this many elements the thread start-up costs more than it saves.
constexpr int64_t kParallelElems = 1 << 15;
constexpr int64_t kParallelDraws = 1024;

// Weights of sample n (float32, the type they are returned in, so every backend draws them
// the same way whatever the image types).
inline void draw_weights(const MixParams& p, int64_t n, float* w) {
    const int S = p.sources;
    const float a = float(p.alpha);
    rng::Stream st(p.seed, kTagMix, uint64_t(n));
    for (int s = 0; s < S; ++s) w[s] = 0.0f;
    if (p.dist == kMixDirichlet) {
        float conc[kMaxMixSources];
        for (int s = 0; s < S; ++s) conc[s] = a;
        rng::dirichlet<float>(st, conc, S, w);
        return;
    }
    float lam;
    if (p.dist == kMixBeta) {
        const float conc[2] = {a, a};
        float pair[2];
        rng::dirichlet<float>(st, conc, 2, pair);
        lam = pair[0];
    } else {
        lam = rng::beta_a1<float>(st, a);
    }
    // Two-source distributions (callers guarantee S == 2; the guards only keep memory safe).
    w[0] = lam;
    if (S > 1) w[1] = 1.0f - lam;
}

// ---------------------------------------------------------------------------------- blend

template <typename TX, DType OUT, typename TC>
void blend(const MixPointers& src, void* out_x, const TC* coef, const MixParams& p) {
    using TO = typename Out<OUT>::type;
    const int64_t N = p.batch, L = p.sample_numel;
    const int S = p.sources;
    const int64_t chunks = (L + kChunk - 1) / kChunk;
    const int64_t items = N * chunks;
    TO* const out = static_cast<TO*>(out_x);

#pragma omp parallel for schedule(static) if (N * L >= kParallelElems)
    for (int64_t it = 0; it < items; ++it) {
        const int64_t n = it / chunks;
        const int64_t i0 = (it % chunks) * kChunk;
        const int64_t len = std::min(kChunk, L - i0);
        const int64_t off = n * L + i0;
        TO* o = out + off;
        const TC* c = coef + n * S;
        if (S == 2) {
            // The common case, fully fused: two loads, two multiplies, one add, one store.
            const TX* x0 = static_cast<const TX*>(src.x[0]) + off;
            const TX* x1 = static_cast<const TX*>(src.x[1]) + off;
            const TC c0 = c[0], c1 = c[1];
#pragma omp simd
            for (int64_t i = 0; i < len; ++i)
                o[i] = Out<OUT>::cvt(c0 * TC(x0[i]) + c1 * TC(x1[i]));
        } else {
            // Any S: accumulate source by source in an L1-resident block (the same order of
            // operations as the S == 2 loop: c0 * x0 first, then + c_s * x_s in order).
            TC acc[kBlock];
            for (int64_t b0 = 0; b0 < len; b0 += kBlock) {
                const int64_t bl = std::min(kBlock, len - b0);
                const TX* x0 = static_cast<const TX*>(src.x[0]) + off + b0;
                const TC c0 = c[0];
#pragma omp simd
                for (int64_t i = 0; i < bl; ++i) acc[i] = c0 * TC(x0[i]);
                for (int s = 1; s < S; ++s) {
                    const TX* xs = static_cast<const TX*>(src.x[s]) + off + b0;
                    const TC cs = c[s];
#pragma omp simd
                    for (int64_t i = 0; i < bl; ++i) acc[i] += cs * TC(xs[i]);
                }
                TO* ob = o + b0;
#pragma omp simd
                for (int64_t i = 0; i < bl; ++i) ob[i] = Out<OUT>::cvt(acc[i]);
            }
        }
    }
}

// Arithmetic in double when either side is float64 (so f64 stays exact to f64 rounding),
// otherwise in float.
template <typename TX, DType OUT>
void dispatch_compute(const MixPointers& src, void* out_x, const float* weights,
                      const MixParams& p) {
    constexpr bool wide = std::is_same<TX, double>::value || OUT == DType::kF64;
    using TC = typename std::conditional<wide, double, float>::type;
    const int64_t nw = p.batch * p.sources;
    // The scale is folded into the coefficient with one rounding (w * scale in double): for
    // uint8 this is w / 255 to the compute type's precision.
    std::vector<TC> coef(size_t(nw > 0 ? nw : 0));
    for (int64_t j = 0; j < nw; ++j) coef[j] = TC(double(weights[j]) * p.scale);
    blend<TX, OUT, TC>(src, out_x, coef.data(), p);
}

template <typename TX>
void dispatch_out(const MixPointers& src, void* out_x, DType out_dtype, const float* weights,
                  const MixParams& p) {
    switch (out_dtype) {
        case DType::kF16: dispatch_compute<TX, DType::kF16>(src, out_x, weights, p); break;
        case DType::kBF16: dispatch_compute<TX, DType::kBF16>(src, out_x, weights, p); break;
        case DType::kF32: dispatch_compute<TX, DType::kF32>(src, out_x, weights, p); break;
        case DType::kF64: dispatch_compute<TX, DType::kF64>(src, out_x, weights, p); break;
        default: break;  // callers validate
    }
}

}  // namespace

template <typename T>
void sample_dirichlet(const T* alpha, T* out, const DirichletParams& p) {
    const int64_t rows = p.rows, k = p.k;
    if (rows <= 0 || k <= 0) return;
#pragma omp parallel for schedule(static) if (rows * k >= kParallelDraws)
    for (int64_t r = 0; r < rows; ++r) {
        rng::Stream st(p.seed, kTagDirichlet, uint64_t(r));
        rng::dirichlet<T>(st, alpha + r * k, k, out + r * k);
    }
}

template void sample_dirichlet<float>(const float*, float*, const DirichletParams&);
template void sample_dirichlet<double>(const double*, double*, const DirichletParams&);

void mix_batch(const MixPointers& src, DType x_dtype, void* out_x, DType out_dtype, float* out_y,
               float* weights, const MixParams& p) {
    const int64_t N = p.batch, C = p.classes;
    const int S = p.sources;
    if (N <= 0 || S < 1 || S > kMaxMixSources || weights == nullptr) return;

    // Phase 1: weights and labels, one sample per iteration (a few hundred ns each).
#pragma omp parallel for schedule(static) if (N * (S + C) >= kParallelDraws)
    for (int64_t n = 0; n < N; ++n) {
        float* w = weights + n * S;
        draw_weights(p, n, w);
        if (out_y != nullptr && C > 0) {
            float* yo = out_y + n * C;
            const float* y0 = src.y[0] + n * C;
            const float w0 = w[0];
            for (int64_t c = 0; c < C; ++c) yo[c] = w0 * y0[c];
            for (int s = 1; s < S; ++s) {
                const float* ys = src.y[s] + n * C;
                const float ws = w[s];
                for (int64_t c = 0; c < C; ++c) yo[c] += ws * ys[c];
            }
        }
    }

    // Phase 2: the image blend.
    if (out_x == nullptr || p.sample_numel <= 0) return;
    switch (x_dtype) {
        case DType::kU8: dispatch_out<uint8_t>(src, out_x, out_dtype, weights, p); break;
        case DType::kF32: dispatch_out<float>(src, out_x, out_dtype, weights, p); break;
        case DType::kF64: dispatch_out<double>(src, out_x, out_dtype, weights, p); break;
        default: break;  // callers validate
    }
}

}  // namespace cpu
}  // namespace genmix
