// Unit test of the CPU random sampling (cpu/random.h) and of sample_dirichlet / mix_batch:
//  * Philox4x32-10 known-answer vectors and the stream layout of params.h,
//  * uniforms in range, normal / Gamma / Dirichlet moments against their closed forms,
//    Kolmogorov-Smirnov distance of Beta(a, 1) (CDF x^a) and Gamma(1, 1) (CDF 1 - e^-x),
//  * Dirichlet rows sum to 1 and stay finite for concentrations 0.01 .. 1000,
//  * determinism for a seed, different seeds (either 32-bit half) give different draws,
//  * mix_batch weights reproduce the documented draws, images and labels are the weighted
//    sums, uint8 scaling, every input/output type, and f16 / bf16 rounding (known values,
//    every rounding boundary, a strided sweep of all floats, and double inputs without
//    double rounding).
// Exit code 0 when every check passes.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/kernels.h"
#include "cpu/random.h"

using genmix::DType;
using genmix::MixParams;
using genmix::MixPointers;
namespace rng = genmix::cpu::rng;

namespace {

void check(bool ok, const std::string& what) {
    ++g_checks;
    if (!ok) fail(what);
}

// printf-style formatting into a string (argument types must match the format exactly).
template <typename... A>
std::string fmt(const char* f, A... a) {
    char buf[320];
    std::snprintf(buf, sizeof buf, f, a...);
    return buf;
}

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// ------------------------------------------------------------------------------- Philox

void test_philox() {
    // Random123 known-answer vectors for philox4x32 with 10 rounds: counter, key, result.
    struct Kat {
        uint32_t ctr[4], key[2], out[4];
    };
    const Kat kats[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (const Kat& k : kats) {
        const rng::Block r = rng::philox4x32_10(
            rng::Block{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, k.key[0], k.key[1]);
        for (int i = 0; i < 4; ++i)
            check(r.v[i] == k.out[i], fmt("philox KAT word %d: got %08x, expected %08x", i,
                                          unsigned(r.v[i]), unsigned(k.out[i])));
    }

    // Stream layout: block j = philox((j, tag, id_lo, id_hi), (seed_lo, seed_hi)), words in
    // order. A 64-bit id and seed exercise both halves.
    const uint64_t seed = 0x0123456789abcdefull, id = 0x00000007fffffff3ull;
    const uint32_t tag = 5;
    rng::Stream s(seed, tag, id);
    for (uint32_t j = 0; j < 3; ++j) {
        const rng::Block b = rng::philox4x32_10(
            rng::Block{{j, tag, uint32_t(id), uint32_t(id >> 32)}}, uint32_t(seed),
            uint32_t(seed >> 32));
        for (int w = 0; w < 4; ++w) check(s.next_u32() == b.v[w], "stream word order");
    }
}

// ------------------------------------------------------------------------------ uniform

void test_uniform() {
    // Exact end points: the double uniform is (m + 0.5) 2^-24 with m = u >> 8.
    check(rng::uniform<double>(0) == 0.5 / 16777216.0, "uniform<double>(0)");
    check(rng::uniform<double>(0xffffffffu) == 1.0 - 0.5 / 16777216.0, "uniform<double>(max)");
    check(rng::uniform<double>(0xffffffffu) < 1.0, "uniform<double> < 1");
    check(rng::uniform<float>(0) == 0.5f / 16777216.0f, "uniform<float>(0)");
    // float cannot hold (m + 0.5) 2^-24 for m >= 2^23: ties round to even, the top value is 1.
    check(rng::uniform<float>(0xffffffffu) <= 1.0f, "uniform<float> <= 1");
    check(std::isfinite(std::log(rng::uniform<float>(0))), "log(uniform<float>(0)) finite");

    // Moments of a long stream, both precisions.
    const int n = 1 << 20;
    rng::Stream sd(42, 0, 0), sf(42, 0, 0);
    double m = 0, m2 = 0, mf = 0;
    bool in_range = true;
    for (int i = 0; i < n; ++i) {
        const double u = rng::next_uniform<double>(sd);
        const float uf = rng::next_uniform<float>(sf);
        in_range = in_range && u > 0 && u < 1 && uf > 0 && uf <= 1;
        m += u;
        m2 += u * u;
        mf += uf;
    }
    m /= n;
    mf /= n;
    const double var = m2 / n - m * m;
    check(in_range, "uniforms in (0, 1)");
    check(std::fabs(m - 0.5) < 6 * std::sqrt(1.0 / 12 / n), fmt("uniform mean %g", m));
    check(std::fabs(mf - m) < 1e-6, "float and double uniforms agree");
    check(std::fabs(var - 1.0 / 12) < 1e-3, fmt("uniform variance %g", var));

    // Normal moments.
    rng::Stream sn(7, 3, 11);
    double s1 = 0, s2 = 0, s4 = 0;
    const int nn = 200000;
    for (int i = 0; i < nn; ++i) {
        const double z = rng::next_normal<double>(sn);
        s1 += z;
        s2 += z * z;
        s4 += z * z * z * z;
    }
    check(std::fabs(s1 / nn) < 6 / std::sqrt(double(nn)), fmt("normal mean %g", s1 / nn));
    check(std::fabs(s2 / nn - 1) < 6 * std::sqrt(2.0 / nn), fmt("normal variance %g", s2 / nn));
    check(std::fabs(s4 / nn - 3) < 0.1, fmt("normal 4th moment %g", s4 / nn));
}

// ------------------------------------------------------------------- moments and KS tests

struct Moments {
    double mean, var, m4;
};

Moments moments(const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m += x;
    m /= double(v.size());
    double m2 = 0, m4 = 0;
    for (double x : v) {
        const double d = x - m;
        m2 += d * d;
        m4 += d * d * d * d;
    }
    return {m, m2 / double(v.size()), m4 / double(v.size())};
}

// Mean and variance against the truth, with tolerances of 6 standard errors estimated from
// the sample itself (the variance's standard error needs the 4th central moment).
void check_moments(const std::vector<double>& v, double mean, double var, const std::string& what) {
    const Moments m = moments(v);
    const double n = double(v.size());
    const double se_mean = std::sqrt(var / n);
    const double se_var = std::sqrt(std::max(m.m4 - m.var * m.var, 0.0) / n);
    check(std::fabs(m.mean - mean) < 6 * se_mean,
          what + fmt(": mean %g, expected %g (se %g)", m.mean, mean, se_mean));
    check(std::fabs(m.var - var) < 6 * se_var + 1e-12,
          what + fmt(": variance %g, expected %g (se %g)", m.var, var, se_var));
}

// Kolmogorov-Smirnov distance of a sample against a continuous CDF.
template <typename Cdf>
double ks_distance(std::vector<double> v, Cdf cdf) {
    std::sort(v.begin(), v.end());
    const double n = double(v.size());
    double d = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        const double f = cdf(v[i]);
        d = std::max(d, std::max(f - double(i) / n, double(i + 1) / n - f));
    }
    return d;
}

const double kAlphas[] = {0.05, 0.3, 1.0, 5.0, 20.0};
constexpr int kSamples = 20000;
// 99.9% quantile of the KS statistic is 1.95 / sqrt(n): the fixed seeds pass it or not.
const double kKsCritical = 1.95 / std::sqrt(double(kSamples));

template <typename T>
void test_gamma_beta(const char* tname) {
    for (double a : kAlphas) {
        // Gamma(a, 1): mean a, variance a. Each sample on its own stream, as the kernels do.
        std::vector<double> g(kSamples);
        for (int i = 0; i < kSamples; ++i) {
            rng::Stream s(1234, 9, uint64_t(i));
            g[i] = std::exp(double(rng::log_gamma_sample<T>(s, T(a))));
        }
        check_moments(g, a, a, std::string(tname) + fmt(" gamma(%g)", a));
        if (a == 1.0) {
            const double d = ks_distance(g, [](double x) { return 1 - std::exp(-x); });
            check(d < kKsCritical, std::string(tname) + fmt(" gamma(1) KS %g", d));
        }

        // Beta(a, 1) = u^(1/a): CDF x^a, mean a / (a + 1), variance a / ((a + 1)^2 (a + 2)).
        std::vector<double> b(kSamples);
        for (int i = 0; i < kSamples; ++i) {
            rng::Stream s(99, 1, uint64_t(i));
            b[i] = double(rng::beta_a1<T>(s, T(a)));
        }
        const double d = ks_distance(b, [a](double x) { return std::pow(x, a); });
        check(d < kKsCritical, std::string(tname) + fmt(" beta(%g, 1) KS %g", a, d));
        check_moments(b, a / (a + 1), a / ((a + 1) * (a + 1) * (a + 2)),
                      std::string(tname) + fmt(" beta(%g, 1)", a));
    }
}

// sample_dirichlet over rows of alpha = a * (1, 2, 3): component i has mean a_i / a0 and
// variance mean_i (1 - mean_i) / (a0 + 1).
template <typename T>
void test_dirichlet_moments(const char* tname) {
    for (double a : kAlphas) {
        const int K = 3;
        std::vector<T> alpha(size_t(kSamples) * K), out(alpha.size());
        for (int r = 0; r < kSamples; ++r)
            for (int k = 0; k < K; ++k) alpha[size_t(r) * K + k] = T(a * (k + 1));
        genmix::DirichletParams p;
        p.rows = kSamples;
        p.k = K;
        p.seed = 2024;
        genmix::cpu::sample_dirichlet<T>(alpha.data(), out.data(), p);
        const double a0 = 6 * a;
        for (int k = 0; k < K; ++k) {
            std::vector<double> col(kSamples);
            for (int r = 0; r < kSamples; ++r) col[r] = double(out[size_t(r) * K + k]);
            const double mean = a * (k + 1) / a0;
            check_moments(col, mean, mean * (1 - mean) / (a0 + 1),
                          std::string(tname) + fmt(" dirichlet(%g * (1,2,3))[%d]", a, k));
        }
    }
}

// Row sums, finiteness and range for concentrations spread over 0.01 .. 1000 (log-uniform),
// plus the extremes on their own; and sample_dirichlet's row r is exactly the stream draw
// (kTagDirichlet, r), which also makes it independent of the thread count.
template <typename T>
void test_dirichlet_rows(const char* tname) {
    std::mt19937_64 gen(5);
    std::uniform_real_distribution<double> lg(std::log(0.01), std::log(1000.0));
    const double tol = std::is_same<T, float>::value ? 2e-6 : 1e-14;
    for (int64_t K : {1, 2, 3, 7, 64, 1000}) {
        for (int mode = 0; mode < 3; ++mode) {
            const int64_t rows = 300;
            std::vector<T> alpha(size_t(rows * K)), out(alpha.size());
            for (auto& v : alpha)
                v = T(mode == 0 ? std::exp(lg(gen)) : mode == 1 ? 0.01 : 1000.0);
            genmix::DirichletParams p;
            p.rows = rows;
            p.k = K;
            p.seed = 77 + uint64_t(mode);
            genmix::cpu::sample_dirichlet<T>(alpha.data(), out.data(), p);
            bool finite = true, sums = true, same = true;
            std::vector<T> ref(static_cast<size_t>(K));
            for (int64_t r = 0; r < rows; ++r) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k) {
                    const T v = out[size_t(r * K + k)];
                    finite = finite && std::isfinite(v) && v >= 0 && v <= 1;
                    s += double(v);
                }
                sums = sums && std::fabs(s - 1) < tol * (1 + 0.01 * double(K));
                rng::Stream st(p.seed, genmix::kTagDirichlet, uint64_t(r));
                rng::dirichlet<T>(st, alpha.data() + r * K, K, ref.data());
                same = same && std::memcmp(ref.data(), out.data() + r * K, sizeof(T) * K) == 0;
            }
            const std::string what = std::string(tname) + fmt(" dirichlet K=%d mode %d", int(K), mode);
            check(finite, what + ": finite, in [0, 1]");
            check(sums, what + ": rows sum to 1");
            check(same, what + ": row r is stream (kTagDirichlet, r)");
        }
    }

    // Determinism and seed sensitivity (both halves of the 64-bit seed).
    const int64_t rows = 64, K = 4;
    std::vector<T> alpha(size_t(rows * K), T(0.7)), o1(alpha.size()), o2(alpha.size());
    genmix::DirichletParams p;
    p.rows = rows;
    p.k = K;
    p.seed = 0x100000005ull;
    genmix::cpu::sample_dirichlet<T>(alpha.data(), o1.data(), p);
    genmix::cpu::sample_dirichlet<T>(alpha.data(), o2.data(), p);
    check(o1 == o2, std::string(tname) + " dirichlet deterministic for a seed");
    for (uint64_t other : {0x100000006ull, 0x000000005ull}) {
        p.seed = other;
        genmix::cpu::sample_dirichlet<T>(alpha.data(), o2.data(), p);
        int differ = 0;
        for (size_t i = 0; i < o1.size(); ++i) differ += o1[i] != o2[i];
        check(differ > int(o1.size()) * 9 / 10, std::string(tname) + " dirichlet seeds differ");
    }
}

// ------------------------------------------------------------- reference f16 / bf16 rounding

// Independent of the kernel's bit tricks: round |f| to the format's quantum in double with
// nearbyint (ties to even), then encode the exactly representable result.
uint16_t ref_f16(double v) {
    if (std::isnan(v)) return 0x7E00;
    const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
    const double a = std::fabs(v);
    if (std::isinf(a)) return sign | 0x7C00;
    int e;
    std::frexp(a, &e);                                       // a = m 2^e, m in [0.5, 1)
    const double q = std::ldexp(1.0, std::max(e - 11, -24));  // 11 significant bits, subnormals
    const double r = std::nearbyint(a / q) * q;
    if (r >= 65536.0) return sign | 0x7C00;                  // 65520 and up round past 65504
    if (r < std::ldexp(1.0, -14)) return sign | uint16_t(r / std::ldexp(1.0, -24));
    int er;
    const double mr = std::frexp(r, &er);
    return sign | uint16_t((er - 1 + 15) << 10) | uint16_t((mr * 2 - 1) * 1024);
}

uint16_t ref_bf16(double v) {
    if (std::isnan(v)) return 0x7FC0;
    const double a = std::fabs(v);
    float r;
    if (std::isinf(a) || a == 0) {
        r = float(a);
    } else {
        int e;
        std::frexp(a, &e);
        const double q = std::ldexp(1.0, std::max(e - 8, -133));  // 8 significant bits
        r = float(std::nearbyint(a / q) * q);  // exact, or 2^128 -> inf
    }
    return uint16_t((std::signbit(v) ? 0x8000 : 0) | (bits(r) >> 16));
}

bool is_f16_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }
bool is_bf16_nan(uint16_t h) { return (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0; }

// ------------------------------------------------------------------------------ mix_batch

// Convert through the public kernel: one Dirichlet source has weight exactly 1 (a softmax of
// a single value), so the output is the input rounded to the output type.
std::vector<uint16_t> convert_via_mix(const void* x, DType xt, int64_t n, DType ot) {
    std::vector<uint16_t> out(static_cast<size_t>(n));
    float w = 0;
    MixPointers src;
    src.x[0] = x;
    MixParams p;
    p.batch = 1;
    p.sample_numel = n;
    p.classes = 0;
    p.sources = 1;
    p.dist = genmix::kMixDirichlet;
    p.alpha = 1.0;
    p.scale = 1.0;
    genmix::cpu::mix_batch(src, xt, out.data(), ot, nullptr, &w, p);
    check(w == 1.0f, "single-source weight is 1");
    return out;
}

void test_half_rounding() {
    // Known values.
    struct Known {
        float f;
        uint16_t h, b;
    };
    const float inf = std::numeric_limits<float>::infinity();
    const Known known[] = {
        {0.0f, 0x0000, 0x0000},
        {-0.0f, 0x8000, 0x8000},
        {1.0f, 0x3C00, 0x3F80},
        {-2.0f, 0xC000, 0xC000},
        {1.0f / 3.0f, 0x3555, 0x3EAB},
        {0.1f, 0x2E66, 0x3DCD},
        {3.14159265f, 0x4248, 0x4049},
        {65504.0f, 0x7BFF, 0x4780},
        {65519.99f, 0x7BFF, 0x4780},
        {65520.0f, 0x7C00, 0x4780},
        {1e9f, 0x7C00, 0x4E6E},
        {std::ldexp(1.0f, -24), 0x0001, 0x3380},
        {std::ldexp(1.0f, -25), 0x0000, 0x3300},             // tie -> even (0)
        {std::ldexp(3.0f, -25), 0x0002, 0x33C0},             // tie -> even (2)
        {std::ldexp(1.0f, -14), 0x0400, 0x3880},             // smallest normal
        {std::ldexp(1023.0f, -24), 0x03FF, 0x3880},          // largest subnormal
        {-std::ldexp(1.0f, -24), 0x8001, 0xB380},
        {1.0f + std::ldexp(1.0f, -11), 0x3C00, 0x3F80},      // tie -> even
        {1.0f + std::ldexp(3.0f, -11), 0x3C02, 0x3F80},      // tie -> even (up)
        {1.0f + std::ldexp(1.0f, -8), 0x3C04, 0x3F80},       // bf16 tie -> even (down)
        {1.0f + std::ldexp(3.0f, -8), 0x3C0C, 0x3F82},       // bf16 tie -> even (up)
        {std::numeric_limits<float>::max(), 0x7C00, 0x7F80},  // bf16 rounds past max: inf
        {std::numeric_limits<float>::denorm_min(), 0x0000, 0x0000},
        {inf, 0x7C00, 0x7F80},
        {-inf, 0xFC00, 0xFF80},
    };
    const int nk = int(sizeof known / sizeof known[0]);
    std::vector<float> xs;
    for (const Known& k : known) xs.push_back(k.f);
    xs.push_back(std::numeric_limits<float>::quiet_NaN());
    xs.push_back(from_bits(0x7F800001u));  // signalling NaN: the payload alone would round to inf
    xs.push_back(from_bits(0xFFC00000u));
    const auto h = convert_via_mix(xs.data(), DType::kF32, int64_t(xs.size()), DType::kF16);
    const auto b = convert_via_mix(xs.data(), DType::kF32, int64_t(xs.size()), DType::kBF16);
    for (int i = 0; i < nk; ++i) {
        check(h[i] == known[i].h, fmt("f16(%.9g) = 0x%04x, expected 0x%04x", double(known[i].f), unsigned(h[i]), unsigned(known[i].h)));
        check(b[i] == known[i].b, fmt("bf16(%.9g) = 0x%04x, expected 0x%04x", double(known[i].f), unsigned(b[i]), unsigned(known[i].b)));
    }
    for (size_t i = size_t(nk); i < xs.size(); ++i) {
        check(is_f16_nan(h[i]), fmt("f16(NaN #%d) = 0x%04x is NaN", int(i), unsigned(h[i])));
        check(is_bf16_nan(b[i]), fmt("bf16(NaN #%d) = 0x%04x is NaN", int(i), unsigned(b[i])));
    }

    // Every f16 rounding boundary: for each positive finite half value, the float just below,
    // at and just above its midpoint with the next value (ties in both directions, overflow).
    std::vector<float> edges;
    for (uint32_t hv = 0; hv < 0x7C00; ++hv) {
        const double v0 = hv < 0x400 ? hv * std::ldexp(1.0, -24)
                                     : std::ldexp(1.0 + (hv & 0x3FF) / 1024.0, int(hv >> 10) - 15);
        const uint32_t hn = hv + 1;
        const double v1 = hn < 0x400 ? hn * std::ldexp(1.0, -24)
                                     : std::ldexp(1.0 + (hn & 0x3FF) / 1024.0, int(hn >> 10) - 15);
        const float mid = float((v0 + v1) / 2);  // exact in float
        for (float f : {float(v0), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, inf)}) {
            edges.push_back(f);
            edges.push_back(-f);
        }
    }
    // Plus a strided sweep over every float bit pattern (odd stride: all exponents and
    // mantissa residues), which also covers NaNs and the bf16 boundaries.
    for (uint64_t u = 0; u < (1ull << 32); u += 4099) edges.push_back(from_bits(uint32_t(u)));
    const auto he = convert_via_mix(edges.data(), DType::kF32, int64_t(edges.size()), DType::kF16);
    const auto be = convert_via_mix(edges.data(), DType::kF32, int64_t(edges.size()), DType::kBF16);
    int bad_h = 0, bad_b = 0;
    for (size_t i = 0; i < edges.size(); ++i) {
        const float f = edges[i];
        if (std::isnan(f)) {
            bad_h += !is_f16_nan(he[i]);
            bad_b += !is_bf16_nan(be[i]);
            continue;
        }
        if (he[i] != ref_f16(f)) {
            if (++bad_h <= 5) fail(fmt("f16 sweep: %.9g -> 0x%04x, expected 0x%04x", double(f), unsigned(he[i]), unsigned(ref_f16(f))));
        }
        if (be[i] != ref_bf16(f)) {
            if (++bad_b <= 5) fail(fmt("bf16 sweep: %.9g -> 0x%04x, expected 0x%04x", double(f), unsigned(be[i]), unsigned(ref_bf16(f))));
        }
    }
    check(bad_h == 0, fmt("f16 sweep over %zu floats: %d wrong", edges.size(), bad_h));
    check(bad_b == 0, fmt("bf16 sweep over %zu floats: %d wrong", edges.size(), bad_b));

    // float64 inputs round directly to f16 / bf16: just above a midpoint must round up even
    // where the nearest float is the midpoint itself (the double-rounding trap).
    const double dv[] = {1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40),
                         1.0 + std::ldexp(1.0, -11) - std::ldexp(1.0, -40),
                         -(1.0 + std::ldexp(1.0, -9) + std::ldexp(1.0, -40)),
                         1.0 + std::ldexp(1.0, -9),
                         1e300,
                         std::ldexp(1.0, -25) + std::ldexp(1.0, -60),
                         std::numeric_limits<double>::quiet_NaN(),
                         0.1,
                         65519.999999};
    const int nd = int(sizeof dv / sizeof dv[0]);
    const auto hd = convert_via_mix(dv, DType::kF64, nd, DType::kF16);
    const auto bd = convert_via_mix(dv, DType::kF64, nd, DType::kBF16);
    for (int i = 0; i < nd; ++i) {
        if (std::isnan(dv[i])) {
            check(is_f16_nan(hd[i]) && is_bf16_nan(bd[i]), "f64 NaN stays NaN");
            continue;
        }
        check(hd[i] == ref_f16(dv[i]), fmt("f16(double %.17g) = 0x%04x, expected 0x%04x", dv[i], unsigned(hd[i]), unsigned(ref_f16(dv[i]))));
        check(bd[i] == ref_bf16(dv[i]), fmt("bf16(double %.17g) = 0x%04x, expected 0x%04x", dv[i], unsigned(bd[i]), unsigned(ref_bf16(dv[i]))));
    }
}

float half_to_float(uint16_t h) {
    const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? m * std::ldexp(1.0, -24)
             : e == 31 ? (m ? NAN : INFINITY)
                       : std::ldexp(1.0 + m / 1024.0, e - 15);
    return float((h & 0x8000) ? -v : v);
}
float bf16_to_float(uint16_t b) { return from_bits(uint32_t(b) << 16); }

// Mixing of random data for every distribution / type combination, checked against the
// documented formulas with weights re-drawn from the documented streams.
void test_mix() {
    std::mt19937_64 gen(11);
    std::uniform_real_distribution<double> U(-3, 3);
    const int64_t N = 5, L = 3 * 16384 + 777, C = 10;  // several chunks, ragged tail

    for (int dist : {genmix::kMixBetaA1, genmix::kMixBeta, genmix::kMixDirichlet}) {
        for (int S : (dist == genmix::kMixDirichlet ? std::vector<int>{1, 2, 3, 8} : std::vector<int>{2})) {
            for (DType xt : {DType::kU8, DType::kF32, DType::kF64}) {
                for (DType ot : {DType::kF16, DType::kBF16, DType::kF32, DType::kF64}) {
                    // Inputs (uint8 spans all byte values, floats are arbitrary).
                    std::vector<std::vector<uint8_t>> xu(static_cast<size_t>(S));
                    std::vector<std::vector<float>> xf(static_cast<size_t>(S));
                    std::vector<std::vector<double>> xd(static_cast<size_t>(S)), xv(static_cast<size_t>(S));
                    std::vector<std::vector<float>> ys(static_cast<size_t>(S));
                    MixPointers src;
                    for (int s = 0; s < S; ++s) {
                        xv[s].resize(size_t(N * L));
                        xu[s].resize(xv[s].size());
                        xf[s].resize(xv[s].size());
                        xd[s].resize(xv[s].size());
                        for (size_t i = 0; i < xv[s].size(); ++i) {
                            xu[s][i] = uint8_t(gen());
                            xf[s][i] = float(U(gen));
                            xd[s][i] = U(gen);
                            xv[s][i] = xt == DType::kU8 ? xu[s][i] : xt == DType::kF32 ? xf[s][i] : xd[s][i];
                        }
                        ys[s].resize(size_t(N * C));
                        for (auto& y : ys[s]) y = float(U(gen));
                        src.x[s] = xt == DType::kU8 ? static_cast<const void*>(xu[s].data())
                                 : xt == DType::kF32 ? static_cast<const void*>(xf[s].data())
                                                     : static_cast<const void*>(xd[s].data());
                        src.y[s] = ys[s].data();
                    }
                    MixParams p;
                    p.batch = N;
                    p.sample_numel = L;
                    p.classes = C;
                    p.sources = S;
                    p.dist = dist;
                    p.alpha = 0.4;
                    p.scale = xt == DType::kU8 ? 1.0 / 255.0 : 1.0;
                    p.seed = 31337;
                    const size_t osz = ot == DType::kF64 ? 8 : ot == DType::kF32 ? 4 : 2;
                    std::vector<unsigned char> out(size_t(N * L) * osz);
                    std::vector<float> oy(size_t(N * C)), w(size_t(N * S), -1.0f);
                    genmix::cpu::mix_batch(src, xt, out.data(), ot, oy.data(), w.data(), p);

                    const std::string what = fmt("mix dist %d S %d x %d out %d", dist, S, int(xt), int(ot));
                    // Weights: the documented draw on stream (kTagMix, n).
                    bool w_ok = true, y_ok = true;
                    for (int64_t n = 0; n < N; ++n) {
                        rng::Stream st(p.seed, genmix::kTagMix, uint64_t(n));
                        float ref[genmix::kMaxMixSources];
                        const float a = float(p.alpha);
                        if (dist == genmix::kMixBetaA1) {
                            ref[0] = std::exp(std::log(rng::uniform<float>(st.next_u32())) / a);
                            ref[1] = 1 - ref[0];
                        } else if (dist == genmix::kMixBeta) {
                            const float conc[2] = {a, a};
                            rng::dirichlet<float>(st, conc, 2, ref);
                            ref[1] = 1 - ref[0];
                        } else {
                            float conc[genmix::kMaxMixSources];
                            std::fill(conc, conc + S, a);
                            rng::dirichlet<float>(st, conc, S, ref);
                        }
                        double sum = 0;
                        for (int s = 0; s < S; ++s) {
                            w_ok = w_ok && w[size_t(n * S + s)] == ref[s];
                            sum += w[size_t(n * S + s)];
                        }
                        w_ok = w_ok && std::fabs(sum - 1) < 1e-6;
                        for (int64_t c = 0; c < C; ++c) {
                            double r = 0, mag = 0;
                            for (int s = 0; s < S; ++s) {
                                r += double(ref[s]) * ys[s][size_t(n * C + c)];
                                mag += std::fabs(double(ref[s]) * ys[s][size_t(n * C + c)]);
                            }
                            y_ok = y_ok && std::fabs(oy[size_t(n * C + c)] - r) <= 4e-7 * mag;
                        }
                    }
                    check(w_ok, what + ": weights are the documented draws, sum to 1");
                    check(y_ok, what + ": labels are the weighted sum");

                    // Images: sum_s w_s scale x_s, to the output type's rounding (plus the
                    // float compute rounding when nothing is float64).
                    const bool wide = xt == DType::kF64 || ot == DType::kF64;
                    const double rel = ot == DType::kF16 ? std::ldexp(1.0, -11)
                                     : ot == DType::kBF16 ? std::ldexp(1.0, -8)
                                     : ot == DType::kF32 ? std::ldexp(1.0, -24)
                                                         : std::ldexp(1.0, -53);
                    const double compute = wide ? 8 * std::ldexp(1.0, -53) : 4 * std::ldexp(1.0, -24);
                    int bad = 0;
                    for (int64_t n = 0; n < N; ++n) {
                        for (int64_t i = 0; i < L; ++i) {
                            const size_t j = size_t(n * L + i);
                            double r = 0, mag = 0;
                            for (int s = 0; s < S; ++s) {
                                const double t = double(w[size_t(n * S + s)]) * p.scale * xv[s][j];
                                r += t;
                                mag += std::fabs(t);
                            }
                            double got;
                            if (ot == DType::kF64) {
                                double v;
                                std::memcpy(&v, out.data() + j * 8, 8);
                                got = v;
                            } else if (ot == DType::kF32) {
                                float v;
                                std::memcpy(&v, out.data() + j * 4, 4);
                                got = v;
                            } else {
                                uint16_t v;
                                std::memcpy(&v, out.data() + j * 2, 2);
                                got = ot == DType::kF16 ? half_to_float(v) : bf16_to_float(v);
                            }
                            const double tol = rel * std::fabs(r) + compute * mag +
                                               (ot == DType::kF16 ? std::ldexp(1.0, -25) : 0.0);
                            if (!(std::fabs(got - r) <= tol)) {
                                if (++bad <= 3)
                                    fail(what + fmt(": out[%zu] = %.17g, expected %.17g", j, got, r));
                            }
                        }
                    }
                    check(bad == 0, what + ": images are the weighted sum");
                }
            }
        }
    }
}

// Bit-level exactness of the float path given the weights, uint8 scaling, determinism.
void test_mix_exact() {
    const int64_t N = 7, L = 20000;
    std::mt19937_64 gen(3);
    std::vector<float> a(size_t(N * L)), b(a.size()), out(a.size()), out2(a.size());
    std::vector<uint8_t> ua(a.size()), ub(a.size());
    for (size_t i = 0; i < a.size(); ++i) {
        a[i] = float(std::ldexp(double(int64_t(gen() % 20001) - 10000), -7));
        b[i] = float(std::ldexp(double(int64_t(gen() % 20001) - 10000), -7));
        ua[i] = uint8_t(i % 256);
        ub[i] = uint8_t(255 - (i * 7) % 256);
    }
    MixPointers src;
    src.x[0] = a.data();
    src.x[1] = b.data();
    MixParams p;
    p.batch = N;
    p.sample_numel = L;
    p.sources = 2;
    p.dist = genmix::kMixBetaA1;
    p.alpha = 0.3;
    p.seed = 5;
    std::vector<float> w(size_t(2 * N)), w2(w.size());
    genmix::cpu::mix_batch(src, DType::kF32, out.data(), DType::kF32, nullptr, w.data(), p);
    int bad = 0;
    for (int64_t n = 0; n < N; ++n) {
        const float c0 = w[size_t(2 * n)], c1 = w[size_t(2 * n + 1)];
        check(c1 == 1.0f - c0, "beta_a1: w1 = 1 - w0 exactly");
        for (int64_t i = 0; i < L; ++i) {
            const size_t j = size_t(n * L + i);
            const float r = c0 * a[j] + c1 * b[j];  // the documented order, in float
            bad += out[j] != r;
        }
    }
    check(bad == 0, fmt("f32 mix equals w0 x0 + w1 x1 exactly (%d mismatches)", bad));

    // Deterministic for a seed, different for another seed (either half).
    genmix::cpu::mix_batch(src, DType::kF32, out2.data(), DType::kF32, nullptr, w2.data(), p);
    check(out == out2 && w == w2, "mix deterministic for a seed");
    for (uint64_t seed : {uint64_t(6), (uint64_t(1) << 32) | 5u}) {
        p.seed = seed;
        genmix::cpu::mix_batch(src, DType::kF32, out2.data(), DType::kF32, nullptr, w2.data(), p);
        int same = 0;
        for (int64_t n = 0; n < N; ++n) same += w[size_t(2 * n)] == w2[size_t(2 * n)];
        check(same == 0, "mix weights differ for another seed");
    }

    // uint8: the same blend of x / 255. Equal sources of 255 give 1 (to float rounding).
    src.x[0] = ua.data();
    src.x[1] = ub.data();
    p.seed = 5;
    p.scale = 1.0 / 255.0;
    genmix::cpu::mix_batch(src, DType::kU8, out.data(), DType::kF32, nullptr, w2.data(), p);
    check(w2 == w, "uint8 inputs draw the same weights");
    bad = 0;
    for (int64_t n = 0; n < N; ++n) {
        const float c0 = float(double(w[size_t(2 * n)]) / 255.0);
        const float c1 = float(double(w[size_t(2 * n + 1)]) / 255.0);
        for (int64_t i = 0; i < L; ++i) {
            const size_t j = size_t(n * L + i);
            const double r = (double(w[size_t(2 * n)]) * ua[j] + double(w[size_t(2 * n + 1)]) * ub[j]) / 255.0;
            bad += out[j] != c0 * float(ua[j]) + c1 * float(ub[j]);
            bad += !(std::fabs(out[j] - r) <= 3e-7 * (r + 1e-30));
        }
    }
    check(bad == 0, fmt("uint8 mix is (w0 x0 + w1 x1) / 255 (%d mismatches)", bad));
    std::fill(ua.begin(), ua.end(), 255);
    std::fill(ub.begin(), ub.end(), 255);
    genmix::cpu::mix_batch(src, DType::kU8, out.data(), DType::kF32, nullptr, w2.data(), p);
    float worst = 0;
    for (float v : out) worst = std::max(worst, std::fabs(v - 1.0f));
    check(worst <= 2e-7f, fmt("uint8 255 + 255 mixes to 1 (off by %g)", double(worst)));

    // BetaA1 weights have the Beta(alpha, 1) mean alpha / (alpha + 1) over many samples.
    MixParams q;
    q.batch = kSamples;
    q.sample_numel = 0;
    q.sources = 2;
    q.dist = genmix::kMixBetaA1;
    q.alpha = 0.3;
    q.seed = 8;
    std::vector<float> wq(size_t(2 * kSamples));
    genmix::cpu::mix_batch(MixPointers{}, DType::kF32, nullptr, DType::kF32, nullptr, wq.data(), q);
    std::vector<double> lam(kSamples);
    for (int i = 0; i < kSamples; ++i) lam[size_t(i)] = wq[size_t(2 * i)];
    const double d = ks_distance(lam, [](double x) { return std::pow(x, 0.3); });
    check(d < kKsCritical, fmt("mix beta_a1 weights KS %g", d));
    // Beta(alpha, alpha) via the Dirichlet pair: mean 1/2, variance 1 / (4 (2 alpha + 1)).
    q.dist = genmix::kMixBeta;
    genmix::cpu::mix_batch(MixPointers{}, DType::kF32, nullptr, DType::kF32, nullptr, wq.data(), q);
    for (int i = 0; i < kSamples; ++i) lam[size_t(i)] = wq[size_t(2 * i)];
    check_moments(lam, 0.5, 1.0 / (4 * (2 * 0.3 + 1)), "mix beta(0.3, 0.3) weights");
}

}  // namespace

int main() {
    test_philox();
    test_uniform();
    test_gamma_beta<float>("float");
    test_gamma_beta<double>("double");
    test_dirichlet_moments<float>("float");
    test_dirichlet_moments<double>("double");
    test_dirichlet_rows<float>("float");
    test_dirichlet_rows<double>("double");
    test_half_rounding();
    test_mix();
    test_mix_exact();
    if (g_failures) {
        std::printf("%d of %d checks FAILED\n", g_failures, g_checks);
        return 1;
    }
    std::printf("all %d checks passed\n", g_checks);
    return 0;
}
