// Unit test of the CPU bias_act kernel:
//  * every activation x grad order x clamp on/off x bias layout against direct formulas,
//  * in-place operation (out aliasing x or dy),
//  * NaN propagation of the forward pass,
//  * first and second derivatives against central finite differences of the kernel's own
//    grad_order 0 output (double, Richardson-extrapolated so the check can be tight),
//  * the kernels' own exp / expm1 / log1p / tanh (cpu/vmath.inc), compiled here once per
//    instruction set like in the library, against the C library on a dense sweep of every
//    binade plus the overflow / underflow thresholds and special values.
// The kernel checks run under every instruction set this CPU supports.
// Exit code 0 when every check passes.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "check.h"
#include "cpu/isa.h"
#include "cpu/kernels.h"

using genmix::BiasActParams;

// vmath.inc as the kernels see it: compiled per instruction set without trapping math (see
// bias_act.cpp), called from loops the compiler vectorises.
#define GENMIX_TEST_VM_LOOPS                                                                  \
    template <typename T>                                                                     \
    void vm_apply(int fn, const T* x, T* y, int64_t n) {                                      \
        switch (fn) {                                                                         \
            case 0:                                                                           \
                _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) y[i] = vm_exp(x[i]);      \
                break;                                                                        \
            case 1:                                                                           \
                _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) y[i] = vm_expm1(x[i]);    \
                break;                                                                        \
            case 2:                                                                           \
                _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) y[i] = vm_log1p(x[i]);    \
                break;                                                                        \
            default:                                                                          \
                _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) y[i] = vm_tanh(x[i]);     \
                break;                                                                        \
        }                                                                                     \
    }

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif
namespace vm_baseline {
#include "cpu/vmath.inc"
GENMIX_TEST_VM_LOOPS
}  // namespace vm_baseline
#ifdef GENMIX_MULTI_ISA
GENMIX_ISA_BEGIN_AVX2
namespace vm_avx2 {
#include "cpu/vmath.inc"
GENMIX_TEST_VM_LOOPS
}  // namespace vm_avx2
GENMIX_ISA_END
GENMIX_ISA_BEGIN_AVX512
namespace vm_avx512 {
#include "cpu/vmath.inc"
GENMIX_TEST_VM_LOOPS
}  // namespace vm_avx512
GENMIX_ISA_END
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

namespace {

const char* const kActNames[] = {"linear", "relu", "lrelu", "tanh", "sigmoid",
                                 "elu", "selu", "softplus", "swish"};
constexpr int kNumActs = 9;
constexpr double kSeluScale = 1.0507009873554805;
constexpr double kSeluAlpha = 1.6732632423543772;

// Direct formulas, written independently of the kernel's factorisations.
double act_value(int act, double v, double alpha) {
    switch (act) {
        case genmix::kActRelu: return v > 0 ? v : 0.0;
        case genmix::kActLrelu: return v > 0 ? v : alpha * v;
        case genmix::kActTanh: return std::tanh(v);
        case genmix::kActSigmoid: return 1.0 / (1.0 + std::exp(-v));
        case genmix::kActElu: return v > 0 ? v : alpha * (std::exp(v) - 1.0);
        case genmix::kActSelu: return kSeluScale * (v > 0 ? v : kSeluAlpha * (std::exp(v) - 1.0));
        case genmix::kActSoftplus: return v > 20 ? v : std::log1p(std::exp(v));
        case genmix::kActSwish: return v / (1.0 + std::exp(-v));
        default: return v;
    }
}

double act_d1(int act, double v, double alpha) {
    const double e = std::exp(-v), s = 1.0 / (1.0 + e);
    switch (act) {
        case genmix::kActRelu: return v > 0 ? 1.0 : 0.0;
        case genmix::kActLrelu: return v > 0 ? 1.0 : alpha;
        case genmix::kActTanh: return 1.0 / (std::cosh(v) * std::cosh(v));
        case genmix::kActSigmoid: return e / ((1.0 + e) * (1.0 + e));
        case genmix::kActElu: return v > 0 ? 1.0 : alpha * std::exp(v);
        case genmix::kActSelu: return kSeluScale * (v > 0 ? 1.0 : kSeluAlpha * std::exp(v));
        case genmix::kActSoftplus: return v > 20 ? 1.0 : s;
        case genmix::kActSwish: return s + v * s * (1.0 - s);
        default: return 1.0;
    }
}

double act_d2(int act, double v, double alpha) {
    const double e = std::exp(-v), s = 1.0 / (1.0 + e);
    switch (act) {
        case genmix::kActTanh: {
            const double c = std::cosh(v);
            return -2.0 * std::tanh(v) / (c * c);
        }
        case genmix::kActSigmoid: return s * (1.0 - s) * (1.0 - 2.0 * s);
        // Conventions at the kinks follow torch's double backward: elu''(0) = 0 (the second
        // derivative switches on v < 0), softplus'' = 0 from the threshold on, inclusive.
        case genmix::kActElu: return v < 0 ? alpha * std::exp(v) : 0.0;
        case genmix::kActSelu: return v < 0 ? kSeluScale * kSeluAlpha * std::exp(v) : 0.0;
        case genmix::kActSoftplus: return v >= 20 ? 0.0 : s * (1.0 - s);
        case genmix::kActSwish: return 2.0 * s * (1.0 - s) + v * s * (1.0 - s) * (1.0 - 2.0 * s);
        default: return 0.0;  // linear, relu, lrelu
    }
}

struct Config {
    double alpha, gain, clamp;  // clamp < 0: off
};

template <typename T>
void call(const std::vector<T>& x, const std::vector<T>* b, const std::vector<T>* dy,
          std::vector<T>& out, int64_t channels, int64_t cs, int act, int order,
          const Config& c) {
    BiasActParams p;
    p.numel = static_cast<int64_t>(x.size());
    p.channels = channels;
    p.channel_stride = cs;
    p.act = act;
    p.grad_order = order;
    p.alpha = static_cast<float>(c.alpha);
    p.gain = static_cast<float>(c.gain);
    p.clamp = static_cast<float>(c.clamp);
    genmix::cpu::bias_act<T>(x.data(), b ? b->data() : nullptr, dy ? dy->data() : nullptr,
                             out.data(), p);
}

struct Shape {
    int64_t numel, channels, cs;
};

// One activation / order / clamp / bias layout against the formulas, plus in-place runs that
// must reproduce the out-of-place result exactly.
template <typename T>
void check_formulas(const Shape& sh, int act, int order, const Config& c, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> uni(-4.0, 4.0), ub(-1.0, 1.0), ud(-2.0, 2.0);
    const int64_t n = sh.numel;
    std::vector<T> b(std::max<int64_t>(sh.channels, 1)), x(n), dy(n), out(n);
    for (auto& v : b) v = static_cast<T>(ub(rng));
    for (int64_t i = 0; i < n; ++i) {
        const T bias = sh.channels ? b[(i / sh.cs) % sh.channels] : T(0);
        x[i] = static_cast<T>(uni(rng));
        // Exact zeros (relu'(0) = 0, lrelu'(0) = alpha, elu''(0) = 0) and the softplus
        // threshold region, including the threshold itself.
        if (i % 17 == 3) x[i] = -bias;
        if (i % 23 == 5) x[i] = static_cast<T>(20.0 + ud(rng) * 2.0);
        if (i % 31 == 9) x[i] = T(20) - bias;
        if (i % 29 == 7) x[i] = static_cast<T>(-30.0 + ud(rng));
        dy[i] = static_cast<T>(ud(rng));
    }
    const std::vector<T>* bp = sh.channels ? &b : nullptr;
    call<T>(x, bp, order ? &dy : nullptr, out, sh.channels, sh.cs, act, order, c);

    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-10;
    const float gain = static_cast<float>(c.gain), clampf = static_cast<float>(c.clamp);
    int bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
        // v rounded to T like the kernel's own x + b; the rest in double.
        const T vt = sh.channels ? static_cast<T>(x[i] + b[(i / sh.cs) % sh.channels]) : x[i];
        const double v = vt;
        const double f = act_value(act, v, static_cast<float>(c.alpha)) * gain;
        if (clampf >= 0 && std::fabs(std::fabs(f) - clampf) < 1e-4 * clampf) continue;  // ambiguous
        double ref;
        if (order == 0) {
            ref = clampf >= 0 ? std::min(std::max(f, -double(clampf)), double(clampf)) : f;
        } else {
            const double d = order == 1 ? act_d1(act, v, static_cast<float>(c.alpha))
                                        : act_d2(act, v, static_cast<float>(c.alpha));
            const bool inside = clampf < 0 || std::fabs(f) <= clampf;
            ref = inside ? double(dy[i]) * gain * d : 0.0;
        }
        // Relative, with a floor of 1 so values near zero are held to an absolute bound.
        const double err = std::fabs(double(out[i]) - ref) / std::max(1.0, std::fabs(ref));
        if (!(err <= tol)) {
            ++bad;
            worst = std::isnan(err) ? INFINITY : std::max(worst, err);
        }
    }

    // In place: out aliasing x, and (for derivatives) out aliasing dy.
    std::vector<T> inplace = x;
    call<T>(inplace, bp, order ? &dy : nullptr, inplace, sh.channels, sh.cs, act, order, c);
    const bool x_alias_ok = inplace == out;
    bool dy_alias_ok = true;
    if (order) {
        std::vector<T> g = dy;
        call<T>(x, bp, &g, g, sh.channels, sh.cs, act, order, c);
        dy_alias_ok = g == out;
    }

    ++g_checks;
    if (bad || !x_alias_ok || !dy_alias_ok) {
        char buf[300];
        std::snprintf(buf, sizeof buf,
                      "%s %s order %d clamp %g numel %lld channels %lld stride %lld: %d bad "
                      "(worst %.3g)%s%s",
                      sizeof(T) == 4 ? "float" : "double", kActNames[act], order, c.clamp,
                      (long long)sh.numel, (long long)sh.channels, (long long)sh.cs, bad, worst,
                      x_alias_ok ? "" : " in-place(x) differs", dy_alias_ok ? "" : " in-place(dy) differs");
        fail(buf);
    }
}

template <typename T>
void check_nan_propagation() {
    for (int act = 0; act < kNumActs; ++act)
        for (double clamp : {-1.0, 2.0}) {
            std::vector<T> x = {std::numeric_limits<T>::quiet_NaN(), T(0.5)}, out(2);
            call<T>(x, nullptr, nullptr, out, 0, 1, act, 0, Config{0.2, 1.5, clamp});
            ++g_checks;
            if (!std::isnan(out[0]))
                fail(std::string("NaN not propagated by ") + kActNames[act]);
        }
}

// The clamp test is inclusive: |act(v) * gain| == clamp still passes the gradient through.
template <typename T>
void check_clamp_boundary() {
    const Config c{0.5, 1.0, 1.5};
    const std::vector<T> x = {T(1.5), T(-1.5), T(-3.0), T(1.75)}, dy = {T(2), T(3), T(5), T(7)};
    const int acts[] = {genmix::kActLinear, genmix::kActRelu, genmix::kActLrelu};
    for (int act : acts) {
        std::vector<T> out(x.size());
        call<T>(x, nullptr, &dy, out, 0, 1, act, 1, c);
        // linear: -3 and 1.75 clamped; relu: -1.5 and -3 have relu' = 0; lrelu: -3 -> -1.5.
        const T expect[3][4] = {{2, 3, 0, 0}, {2, 0, 0, 0}, {2, T(1.5), T(2.5), 0}};
        const T* e = expect[act == genmix::kActLinear ? 0 : act == genmix::kActRelu ? 1 : 2];
        ++g_checks;
        if (!std::equal(out.begin(), out.end(), e))
            fail(std::string("inclusive clamp boundary: ") + kActNames[act]);
    }
}

// Derivatives of the kernel's own forward output by finite differences (double).
void check_finite_differences(std::mt19937_64& rng) {
    std::uniform_real_distribution<double> uni(-5.0, 5.0), ub(-0.5, 0.5);
    for (int act = 0; act < kNumActs; ++act)
        for (double clamp : {-1.0, 1.5}) {
            const Config c{act == genmix::kActElu ? 0.7 : 0.2, 1.3, clamp};
            const int64_t n = 400;
            std::vector<double> b(n), x(n), ones(n, 1.0);
            for (int64_t i = 0; i < n; ++i) {
                b[i] = ub(rng);
                for (;;) {
                    double v = uni(rng);
                    if (act == genmix::kActSoftplus && i % 4 == 0) v = 20.0 + uni(rng);
                    // Stay clear of kinks (0, the softplus threshold) and of the clamp boundary:
                    // a difference quotient across them measures nothing.
                    const double f = act_value(act, v, c.alpha) * c.gain;
                    if (std::fabs(v) < 0.1 || std::fabs(v - 20.0) < 0.1) continue;
                    if (clamp >= 0 && std::fabs(std::fabs(f) - clamp) < 0.1) continue;
                    x[i] = v - b[i];
                    break;
                }
            }
            auto eval = [&](int order, double shift, const std::vector<double>* dy) {
                std::vector<double> xs(x), out(n);
                for (auto& v : xs) v += shift;
                call<double>(xs, &b, dy, out, n, 1, act, order, c);
                return out;
            };
            const double h1 = 1e-2, h2 = 2e-2;
            const auto f0 = eval(0, 0, nullptr);
            const auto fp1 = eval(0, h1 / 2, nullptr), fm1 = eval(0, -h1 / 2, nullptr);
            const auto fp2 = eval(0, h1, nullptr), fm2 = eval(0, -h1, nullptr);
            const auto sp1 = eval(0, h2 / 2, nullptr), sm1 = eval(0, -h2 / 2, nullptr);
            const auto sp2 = eval(0, h2, nullptr), sm2 = eval(0, -h2, nullptr);
            const auto g1 = eval(1, 0, &ones), g2 = eval(2, 0, &ones);
            const auto gp1 = eval(1, h1 / 2, &ones), gm1 = eval(1, -h1 / 2, &ones);
            const auto gp2 = eval(1, h1, &ones), gm2 = eval(1, -h1, &ones);
            int bad1 = 0, bad2 = 0, bad21 = 0;
            for (int64_t i = 0; i < n; ++i) {
                // Richardson: (4 D(h/2) - D(h)) / 3 cancels the h^2 error term.
                const double d_half = (fp1[i] - fm1[i]) / h1, d_full = (fp2[i] - fm2[i]) / (2 * h1);
                const double fd1 = (4 * d_half - d_full) / 3;
                const double q_half = (sp1[i] - 2 * f0[i] + sm1[i]) / (h2 * h2 / 4);
                const double q_full = (sp2[i] - 2 * f0[i] + sm2[i]) / (h2 * h2);
                const double fd2 = (4 * q_half - q_full) / 3;
                const double e_half = (gp1[i] - gm1[i]) / h1, e_full = (gp2[i] - gm2[i]) / (2 * h1);
                const double fd21 = (4 * e_half - e_full) / 3;
                if (!(std::fabs(g1[i] - fd1) <= 1e-8 * std::max(1.0, std::fabs(fd1)))) ++bad1;
                if (!(std::fabs(g2[i] - fd2) <= 1e-6 * std::max(1.0, std::fabs(fd2)))) ++bad2;
                if (!(std::fabs(g2[i] - fd21) <= 1e-8 * std::max(1.0, std::fabs(fd21)))) ++bad21;
            }
            g_checks += 3;
            if (bad1 || bad2 || bad21) {
                char buf[200];
                std::snprintf(buf, sizeof buf,
                              "finite differences %s clamp %g: %d bad first, %d bad second (from "
                              "forward), %d bad second (from first)",
                              kActNames[act], clamp, bad1, bad2, bad21);
                fail(buf);
            }
        }
}

// ------------------------------------------------------------------ vmath.inc against libm

const char* const kVmNames[] = {"exp", "expm1", "log1p", "tanh"};

template <typename T>
void vm_apply_isa(genmix::cpu::CpuIsa isa, int fn, const std::vector<T>& x, std::vector<T>& y) {
    y.assign(x.size(), T(0));
    const int64_t n = static_cast<int64_t>(x.size());
#ifdef GENMIX_MULTI_ISA
    if (isa == genmix::cpu::kIsaAvx512) return vm_avx512::vm_apply<T>(fn, x.data(), y.data(), n);
    if (isa == genmix::cpu::kIsaAvx2) return vm_avx2::vm_apply<T>(fn, x.data(), y.data(), n);
#endif
    (void)isa;
    vm_baseline::vm_apply<T>(fn, x.data(), y.data(), n);
}

// The reference in the next wider type (float: double; double: long double, 64-bit significand
// on x86).
template <typename T>
using Wide = std::conditional_t<sizeof(T) == 4, double, long double>;

template <typename T>
Wide<T> vm_reference(int fn, Wide<T> v) {
    switch (fn) {
        case 0: return std::exp(v);
        case 1: return std::expm1(v);
        case 2: return std::log1p(v);
        default: return std::tanh(v);
    }
}

// Inputs: every binade (bit patterns at a fixed stride, both signs) up to `limit`, a uniform grid
// over [lo, hi], the region near zero, and the thresholds and special values.
template <typename T>
std::vector<T> vm_inputs(T limit, T lo, T hi, const std::vector<T>& extra) {
    using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    std::vector<T> x;
    const U top = __builtin_bit_cast(U, limit);
    const U stride = sizeof(T) == 4 ? U(997) : U(1) << 42 | U(12345);  // 1-2M patterns per sign
    for (U u = 0; u <= top - stride; u += stride) {
        const T v = __builtin_bit_cast(T, u);
        x.push_back(v);
        x.push_back(-v);
    }
    const int64_t grid = 2000000;
    for (int64_t i = 0; i <= grid; ++i) x.push_back(lo + (hi - lo) * T(i) / T(grid));
    for (int64_t i = -20000; i <= 20000; ++i) x.push_back(T(i) * T(1e-5));
    x.insert(x.end(), extra.begin(), extra.end());
    const T inf = std::numeric_limits<T>::infinity();
    for (T v : {T(0), -T(0), inf, -inf, std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::max(),
                -std::numeric_limits<T>::max(), std::numeric_limits<T>::min(),
                std::numeric_limits<T>::denorm_min(), -std::numeric_limits<T>::denorm_min()}) {
        x.push_back(v);
    }
    return x;
}

// Error of y in units of T's ulp at the reference (the subnormal spacing below the normal
// range). Infinities count as 2^max_exponent, so a result just past the largest finite value
// or an overflow to inf where the reference overflows too measures as what it is.
template <typename T>
double vm_ulp_error(T y, Wide<T> ref) {
    using W = Wide<T>;
    const bool ref_nan = std::isnan(ref);
    if (ref_nan || std::isnan(y)) return ref_nan && std::isnan(y) ? 0.0 : INFINITY;
    if (std::numeric_limits<W>::max_exponent <= std::numeric_limits<T>::max_exponent &&
        (std::isinf(y) || std::isinf(ref)))  // no room above T's range: infinities must match
        return W(y) == ref ? 0.0 : INFINITY;
    const W big = std::ldexp(W(1), std::numeric_limits<T>::max_exponent);
    const W yw = std::isinf(y) ? std::copysign(big, W(y)) : W(y);
    const W rw = std::fabs(ref) > big ? std::copysign(big, ref) : ref;
    int e = 0;
    std::frexp(rw, &e);  // |rw| in [2^(e-1), 2^e)
    const int lowest = std::numeric_limits<T>::min_exponent - std::numeric_limits<T>::digits;
    const W ulp = std::ldexp(W(1), rw == 0 ? lowest : std::max(e - std::numeric_limits<T>::digits, lowest));
    return static_cast<double>(std::fabs(yw - rw) / ulp);
}

// Bounds: ulp of the correctly rounded result, and the relative error for normal results.
constexpr double kVmMaxUlp[] = {1.5, 2.5, 2.0, 3.5};
constexpr double kVmMaxRel[2][4] = {{2e-7, 2e-7, 2e-7, 3e-7}, {4e-16, 6e-16, 4e-16, 8e-16}};

template <typename T>
void check_vmath_fn(int fn, const std::vector<T>& x, const std::vector<genmix::cpu::CpuIsa>& isas) {
    std::vector<Wide<T>> ref(x.size());
    for (size_t i = 0; i < x.size(); ++i) ref[i] = vm_reference<T>(fn, Wide<T>(x[i]));
    std::vector<T> y;
    for (auto isa : isas) {
        vm_apply_isa<T>(isa, fn, x, y);
        double worst_ulp = 0, worst_rel = 0;
        T at_ulp = 0, at_rel = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            const double e = vm_ulp_error<T>(y[i], ref[i]);
            if (!(e <= worst_ulp)) worst_ulp = e, at_ulp = x[i];
            const Wide<T> a = std::fabs(ref[i]);
            if (a >= std::numeric_limits<T>::min() && a <= std::numeric_limits<T>::max()) {
                const double rel = static_cast<double>(std::fabs(Wide<T>(y[i]) - ref[i]) / a);
                if (!(rel <= worst_rel)) worst_rel = rel, at_rel = x[i];
            }
        }
        ++g_checks;
        const bool ok = worst_ulp <= kVmMaxUlp[fn] && worst_rel <= kVmMaxRel[sizeof(T) == 8][fn];
        char buf[300];
        std::snprintf(buf, sizeof buf, "vmath %s %s %s: %zu inputs, worst %.3f ulp (x = %.17g), relative %.3g (x = %.17g)",
                      kVmNames[fn], sizeof(T) == 4 ? "float" : "double", genmix::cpu::cpu_isa_name(isa),
                      x.size(), worst_ulp, double(at_ulp), worst_rel, double(at_rel));
        if (ok)
            std::printf("%s\n", buf);
        else
            fail(buf);
    }
}

template <typename T>
void check_vmath(const std::vector<genmix::cpu::CpuIsa>& isas) {
    const bool f = sizeof(T) == 4;
    // Overflow and underflow thresholds of exp (the largest finite result, the smallest
    // subnormal) and the clamps inside vmath.inc, each with its neighbours.
    std::vector<T> at = f ? std::vector<T>{T(88.72283935546875), T(88.72283172607422), T(-87.33654022216797),
                                           T(-103.27892303466797), T(-103.97208404541016), T(-104), T(89), T(-40),
                                           T(-20), T(0.34657359), T(-0.34657359), T(-0.5), T(-1), T(-2)}
                          : std::vector<T>{T(709.782712893384), T(709.78271289338397), T(-708.39641853226408),
                                           T(-744.44007192138126), T(-745.13321910194122), T(-746), T(710),
                                           T(-40), T(-38), T(0.34657359027997264), T(-0.34657359027997264),
                                           T(-0.5), T(-1), T(-2)};
    std::vector<T> extra;
    for (T v : at) {
        T a = v, b = v;
        for (int k = 0; k < 64; ++k) {
            extra.push_back(a);
            extra.push_back(b);
            a = std::nextafter(a, std::numeric_limits<T>::infinity());
            b = std::nextafter(b, -std::numeric_limits<T>::infinity());
        }
    }
    const T inf = std::numeric_limits<T>::infinity();
    // exp and expm1: every binade up to past the overflow, the grid over the finite range.
    const auto xe = vm_inputs<T>(f ? T(200) : T(1500), f ? T(-110) : T(-750), f ? T(95) : T(712), extra);
    check_vmath_fn<T>(0, xe, isas);
    check_vmath_fn<T>(1, xe, isas);
    // log1p: [-1, max] (and below -1, NaN), the grid over (-1, 5].
    auto xl = vm_inputs<T>(std::numeric_limits<T>::max(), T(-1), T(5), extra);
    for (T v : {T(-1), std::nextafter(T(-1), T(0)), std::nextafter(T(-1), -inf), T(-1e30)}) xl.push_back(v);
    check_vmath_fn<T>(2, xl, isas);
    // tanh: every binade, the grid over [-25, 25].
    const auto xt = vm_inputs<T>(inf, T(-25), T(25), extra);
    check_vmath_fn<T>(3, xt, isas);
}

template <typename T>
void run_suite(const char* name) {
    const int before = g_failures, checks_before = g_checks;
    std::mt19937_64 rng(sizeof(T) == 4 ? 42 : 43);
    const Shape shapes[] = {
        {1000, 0, 1},              // no bias
        {999, 3, 1},               // channels innermost, few channels: expanded pattern
        {70 * 30 + 11, 70, 1},     // channels innermost, bias used as the pattern directly
        {4 * 5 * 40, 4, 5},        // short channel runs: expanded pattern
        {5 * 100 * 3 - 7, 5, 100}, // long runs (NCHW), numel not a multiple of the period
        {7 * 64 * 2, 7, 64},       // runs exactly at the pattern cut-off
        {2 * 40000, 2000, 20},     // short runs but a huge period: per-run bias, threaded
        {3 * 70 * 200, 70, 200},   // long runs, threaded
        {100003, 3, 1},            // pattern, threaded, ragged end
        {40000, 0, 1},             // no bias, threaded
    };
    const Config configs[] = {{0.2, 1.4142135623730951, -1.0}, {0.2, 1.4142135623730951, 1.5},
                              {0.7, 0.5, 0.8}};
    for (const auto& sh : shapes)
        for (int act = 0; act < kNumActs; ++act)
            for (int order = 0; order <= 2; ++order)
                for (const auto& c : configs) check_formulas<T>(sh, act, order, c, rng);
    check_nan_propagation<T>();
    check_clamp_boundary<T>();
    std::printf("%s: %d checks, %d failed\n", name, g_checks - checks_before, g_failures - before);
}

}  // namespace

int main() {
    namespace gc = genmix::cpu;
    std::vector<gc::CpuIsa> isas;
    for (gc::CpuIsa isa : {gc::kIsaBaseline, gc::kIsaAvx2, gc::kIsaAvx512})
        if (isa <= gc::cpu_isa_supported()) isas.push_back(isa);
    {
        const int before = g_failures, checks_before = g_checks;
        check_vmath<float>(isas);
        check_vmath<double>(isas);
        std::printf("vmath: %d checks, %d failed\n", g_checks - checks_before, g_failures - before);
    }
    for (gc::CpuIsa isa : isas) {
        gc::set_cpu_isa(isa);
        const std::string tag = std::string(" (") + gc::cpu_isa_name(isa) + ")";
        run_suite<float>(("bias_act float" + tag).c_str());
        run_suite<double>(("bias_act double" + tag).c_str());
        const int before = g_failures, checks_before = g_checks;
        std::mt19937_64 rng(7);
        check_finite_differences(rng);
        std::printf("bias_act finite differences%s: %d checks, %d failed\n", tag.c_str(),
                    g_checks - checks_before, g_failures - before);
    }
    gc::set_cpu_isa(gc::cpu_isa_supported());
    if (g_failures) {
        std::printf("%d FAILED\n", g_failures);
        return 1;
    }
    std::printf("all passed\n");
    return 0;
}
