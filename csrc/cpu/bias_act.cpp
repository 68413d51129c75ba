// bias_act on the CPU: bias add, activation, gain and clamp (or their first / second
// derivative) fused into one pass over memory.
//
// The activation, derivative order, clamp and bias mode are template parameters, so every
// combination gets its own branch-free inner loop and the switch happens once per call. The
// storage is walked as runs that share one bias value (scalar bias, long runs) or as runs over
// a repeating bias pattern (short channel strides, e.g. channels innermost), so the inner loop
// is always a plain elementwise loop the compiler can vectorise.

#include <algorithm>
#include <math.h>

#include <cmath>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"

// GCC's default -ftrapping-math forbids turning the selects of relu / lrelu / clamp into vector
// blends (a comparison could raise an FP exception flag), which leaves every loop scalar and
// branchy. Nothing here reads FP exception flags, and NaN / inf results are unaffected, so
// the kernels are compiled without that guarantee whatever flags the build passes.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

namespace genmix {
namespace cpu {
namespace {

// Math helpers defined under the pragma above: the <cmath> inline wrappers were compiled
// with other options and GCC will not inline them here (a call even for fabs blocks
// vectorisation), so the hot code calls the C library / builtins directly.
inline float m_exp(float v) { return ::expf(v); }
inline double m_exp(double v) { return ::exp(v); }
inline float m_expm1(float v) { return ::expm1f(v); }
inline double m_expm1(double v) { return ::expm1(v); }
inline float m_log1p(float v) { return ::log1pf(v); }
inline double m_log1p(double v) { return ::log1p(v); }
inline float m_tanh(float v) { return ::tanhf(v); }
inline double m_tanh(double v) { return ::tanh(v); }
template <typename T>
inline T m_abs(T v) { return v < T(0) ? -v : v; }  // NaN stays NaN
template <typename T>
inline T m_min0(T v) { return v > T(0) ? T(0) : v; }  // min(v, 0), NaN stays NaN

constexpr double kSeluScale = 1.0507009873554805;
constexpr double kSeluAlpha = 1.6732632423543772;
constexpr double kSoftplusThreshold = 20.0;

// Value f = act(v) and the derivative d of order ORDER (for ORDER == 0, d is unused).
// f is only guaranteed when NEED_F or ORDER == 0: derivatives that do not depend on it skip it.
template <int ACT, int ORDER, bool NEED_F, typename T>
inline void activate(T v, T alpha, T& f, T& d) {
    constexpr bool want_f = NEED_F || ORDER == 0;
    const T one = T(1), zero = T(0);
    if constexpr (ACT == kActRelu) {
        if (want_f) f = v < zero ? zero : v;  // keeps NaN
        d = ORDER == 1 ? (v > zero ? one : zero) : zero;  // relu'(0) = 0
    } else if constexpr (ACT == kActLrelu) {
        if (want_f) f = v > zero ? v : v * alpha;
        d = ORDER == 1 ? (v > zero ? one : alpha) : zero;  // lrelu'(0) = alpha
    } else if constexpr (ACT == kActTanh) {
        f = m_tanh(v);
        const T d1 = one - f * f;
        d = ORDER == 1 ? d1 : T(-2) * f * d1;
    } else if constexpr (ACT == kActSigmoid) {
        f = one / (one + m_exp(-v));
        const T d1 = f * (one - f);
        d = ORDER == 1 ? d1 : d1 * (one - T(2) * f);
    } else if constexpr (ACT == kActElu || ACT == kActSelu) {
        const T scale = ACT == kActSelu ? T(kSeluScale) : one;
        const T a = ACT == kActSelu ? T(kSeluAlpha) : alpha;
        // Only the negative side needs exp; the positive side must not overflow into it.
        T e = zero;
        if (ORDER > 0) e = m_exp(m_min0(v));
        if (want_f) f = scale * (v > zero ? v : a * m_expm1(m_min0(v)));
        if (ORDER == 1) d = scale * (v > zero ? one : a * e);
        // torch switches the second derivative on v < 0 (the first on v <= 0).
        if (ORDER == 2) d = v < zero ? scale * a * e : zero;
    } else if constexpr (ACT == kActSoftplus) {
        // torch semantics: linear above the threshold (and derivative 1 there).
        const bool lin = v > T(kSoftplusThreshold);
        const T z = m_exp(lin ? zero : v);
        if (want_f) f = lin ? v : m_log1p(z);
        const T s = z / (z + one);
        if (ORDER == 1) d = lin ? one : s;
        // torch: softplus''(v) is 0 from the threshold on, inclusive.
        if (ORDER == 2) d = v >= T(kSoftplusThreshold) ? zero : s * (one - s);
    } else if constexpr (ACT == kActSwish) {
        const T s = one / (one + m_exp(-v));
        if (want_f) f = v * s;
        if (ORDER == 1) d = s * (one + v * (one - s));
        if (ORDER == 2) d = s * (one - s) * (T(2) + v * (one - T(2) * s));
    } else {  // linear (also the fallback; callers validate the code)
        f = v;
        d = ORDER == 1 ? one : zero;
    }
}

template <typename T>
struct Consts {
    T alpha, gain, clamp;
};

template <typename T, int ACT, int ORDER, bool CLAMP>
inline T element(T v, T g, Consts<T> k) {
    T f = T(0), d = T(0);
    activate<ACT, ORDER, CLAMP>(v, k.alpha, f, d);
    if constexpr (ORDER == 0) {
        T y = f * k.gain;
        if constexpr (CLAMP) y = y < -k.clamp ? -k.clamp : (y > k.clamp ? k.clamp : y);  // keeps NaN
        return y;
    } else {
        T r = g * k.gain * d;
        // Where the forward clamp saturated the output is constant: zero gradient.
        if constexpr (CLAMP) r = m_abs(f * k.gain) <= k.clamp ? r : T(0);
        return r;
    }
}

enum BiasMode { kNoBias = 0, kScalarBias = 1, kVectorBias = 2 };

// out[i] for i < n. out may be x or dy exactly (in-place): each iteration reads its own
// index before writing it, which `omp simd` allows, so no restrict is needed.
// The constants come by value: read through a reference inside a conditional they would be
// conditional loads, which keep the compiler from turning the selects into blends.
template <typename T, int ACT, int ORDER, bool CLAMP, int BIAS>
void segment(const T* x, const T* dy, T* out, int64_t n, T bs, const T* bv, const Consts<T> k) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        T v = x[i];
        if constexpr (BIAS == kScalarBias) v += bs;
        if constexpr (BIAS == kVectorBias) v += bv[i];
        T g = T(0);
        if constexpr (ORDER > 0) g = dy[i];
        out[i] = element<T, ACT, ORDER, CLAMP>(v, g, k);
    }
}

// Runs shorter than this would leave the vector units idle: expand the bias into a repeating
// pattern instead (bounded in size).
constexpr int64_t kMinRun = 64;
constexpr int64_t kMaxPattern = 1 << 15;
constexpr int64_t kPatternTarget = 1024;
constexpr int64_t kParallelElems = 1 << 15;

template <typename T, int ACT, int ORDER, bool CLAMP>
void run(const T* x, const T* b, const T* dy, T* out, const BiasActParams& p) {
    const int64_t numel = p.numel, C = p.channels, cs = std::max<int64_t>(p.channel_stride, 1);
    const Consts<T> k{T(p.alpha), T(p.gain), T(p.clamp)};

    // Bias as a pattern of period `period` along storage, or per-run scalar values.
    const bool has_bias = C > 0 && b != nullptr;
    std::vector<T> expanded;
    const T* pattern = nullptr;
    int64_t period = 0;
    if (has_bias && cs == 1 && C >= kMinRun) {
        pattern = b;  // channels innermost: the bias itself is the pattern
        period = C;
    } else if (has_bias && cs < kMinRun && C * cs <= kMaxPattern) {
        const int64_t L = C * cs;
        const int64_t reps = std::max<int64_t>(1, kPatternTarget / L);
        period = L * reps;
        expanded.resize(period);
        for (int64_t j = 0; j < period; ++j) expanded[j] = b[(j / cs) % C];
        pattern = expanded.data();
    }

#pragma omp parallel if (numel > kParallelElems)
    {
        int nth = 1, tid = 0;
#ifdef _OPENMP
        nth = omp_get_num_threads();
        tid = omp_get_thread_num();
#endif
        // Contiguous slices, cache-line aligned, one per thread.
        const int64_t chunk = ((numel + nth - 1) / nth + 15) / 16 * 16;
        const int64_t s = std::min(numel, tid * chunk), e = std::min(numel, s + chunk);
        const T* xs = x + s;
        const T* dys = ORDER > 0 ? dy + s : nullptr;
        T* os = out + s;
        if (s < e) {
            if (!has_bias) {
                segment<T, ACT, ORDER, CLAMP, kNoBias>(xs, dys, os, e - s, T(0), nullptr, k);
            } else if (pattern) {
                int64_t pos = s % period;
                for (int64_t i = 0; i < e - s;) {
                    const int64_t len = std::min(e - s - i, period - pos);
                    segment<T, ACT, ORDER, CLAMP, kVectorBias>(
                        xs + i, dys ? dys + i : nullptr, os + i, len, T(0), pattern + pos, k);
                    i += len;
                    pos = 0;
                }
            } else {
                for (int64_t i = s; i < e;) {
                    const int64_t blk = i / cs;
                    const int64_t len = std::min(e, (blk + 1) * cs) - i;
                    segment<T, ACT, ORDER, CLAMP, kScalarBias>(
                        x + i, dys ? dy + i : nullptr, out + i, len, b[blk % C], nullptr, k);
                    i += len;
                }
            }
        }
    }
}

template <typename T, int ACT>
void dispatch_order(const T* x, const T* b, const T* dy, T* out, const BiasActParams& p) {
    const bool clamp = p.clamp >= 0;
    switch (p.grad_order) {
        case 0:
            clamp ? run<T, ACT, 0, true>(x, b, dy, out, p) : run<T, ACT, 0, false>(x, b, dy, out, p);
            break;
        case 1:
            clamp ? run<T, ACT, 1, true>(x, b, dy, out, p) : run<T, ACT, 1, false>(x, b, dy, out, p);
            break;
        case 2:
            clamp ? run<T, ACT, 2, true>(x, b, dy, out, p) : run<T, ACT, 2, false>(x, b, dy, out, p);
            break;
        default:
            break;  // callers validate grad_order
    }
}

}  // namespace

template <typename T>
void bias_act(const T* x, const T* b, const T* dy, T* out, const BiasActParams& p) {
    if (p.numel <= 0) return;
    switch (p.act) {
        case kActRelu: dispatch_order<T, kActRelu>(x, b, dy, out, p); break;
        case kActLrelu: dispatch_order<T, kActLrelu>(x, b, dy, out, p); break;
        case kActTanh: dispatch_order<T, kActTanh>(x, b, dy, out, p); break;
        case kActSigmoid: dispatch_order<T, kActSigmoid>(x, b, dy, out, p); break;
        case kActElu: dispatch_order<T, kActElu>(x, b, dy, out, p); break;
        case kActSelu: dispatch_order<T, kActSelu>(x, b, dy, out, p); break;
        case kActSoftplus: dispatch_order<T, kActSoftplus>(x, b, dy, out, p); break;
        case kActSwish: dispatch_order<T, kActSwish>(x, b, dy, out, p); break;
        default: dispatch_order<T, kActLinear>(x, b, dy, out, p); break;
    }
}

template void bias_act<float>(const float*, const float*, const float*, float*, const BiasActParams&);
template void bias_act<double>(const double*, const double*, const double*, double*,
                               const BiasActParams&);

}  // namespace cpu
}  // namespace genmix
