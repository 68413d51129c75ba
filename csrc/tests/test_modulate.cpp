// Unit test of the CPU modulated-weight kernels:
//  * forward (out, d) and backward (gw, gs) in float and double against a naive double
//    implementation of the formulas in ModulateParams, demodulate on and off, K = 1 / 4 / 9,
//    N = 1, O = 1 and a shape large enough to split over threads,
//  * the double backward against central finite differences of L = sum(out * R), R random,
//  * empty shapes (every output that exists is still written).
// Exit code 0 when every check passes.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/kernels.h"

using genmix::ModulateParams;

namespace {

struct Shape {
    int64_t N, O, I, K;
};

std::string describe(const Shape& sh, bool demod, const char* type) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "%s N=%lld O=%lld I=%lld K=%lld demod=%d", type, (long long)sh.N,
                  (long long)sh.O, (long long)sh.I, (long long)sh.K, int(demod));
    return buf;
}

// Naive double forward, straight from the definition (no factorisation of the sum).
void ref_forward(const std::vector<double>& w, const std::vector<double>& s, const Shape& sh, bool demod,
                 double eps, std::vector<double>& out, std::vector<double>& d) {
    const int64_t N = sh.N, O = sh.O, I = sh.I, K = sh.K;
    out.assign(size_t(N * O * I * K), 0.0);
    d.assign(size_t(N * O), 1.0);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
            double dd = 1.0;
            if (demod) {
                double sum = 0.0;
                for (int64_t i = 0; i < I; ++i)
                    for (int64_t k = 0; k < K; ++k) {
                        const double v = w[size_t((o * I + i) * K + k)] * s[size_t(n * I + i)];
                        sum += v * v;
                    }
                dd = 1.0 / std::sqrt(sum + eps);
            }
            d[size_t(n * O + o)] = dd;
            for (int64_t i = 0; i < I; ++i)
                for (int64_t k = 0; k < K; ++k)
                    out[size_t(((n * O + o) * I + i) * K + k)] =
                        w[size_t((o * I + i) * K + k)] * s[size_t(n * I + i)] * dd;
        }
}

// Naive double backward, straight from the formulas.
void ref_backward(const std::vector<double>& w, const std::vector<double>& s, const std::vector<double>& d,
                  const std::vector<double>& g, const Shape& sh, bool demod, std::vector<double>& gw,
                  std::vector<double>& gs) {
    const int64_t N = sh.N, O = sh.O, I = sh.I, K = sh.K;
    auto W = [&](int64_t o, int64_t i, int64_t k) { return w[size_t((o * I + i) * K + k)]; };
    auto G = [&](int64_t n, int64_t o, int64_t i, int64_t k) { return g[size_t(((n * O + o) * I + i) * K + k)]; };
    std::vector<double> gq(size_t(N * O), 0.0);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
            double gd = 0.0;
            for (int64_t i = 0; i < I; ++i)
                for (int64_t k = 0; k < K; ++k) gd += G(n, o, i, k) * W(o, i, k) * s[size_t(n * I + i)];
            const double dd = d[size_t(n * O + o)];
            gq[size_t(n * O + o)] = demod ? -0.5 * dd * dd * dd * gd : 0.0;
        }
    gw.assign(size_t(O * I * K), 0.0);
    for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < I; ++i)
            for (int64_t k = 0; k < K; ++k) {
                double a = 0.0, b = 0.0;
                for (int64_t n = 0; n < N; ++n) {
                    const double sv = s[size_t(n * I + i)];
                    a += G(n, o, i, k) * sv * d[size_t(n * O + o)];
                    b += gq[size_t(n * O + o)] * sv * sv;
                }
                gw[size_t((o * I + i) * K + k)] = a + 2.0 * W(o, i, k) * b;
            }
    gs.assign(size_t(N * I), 0.0);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < I; ++i) {
            double a = 0.0, b = 0.0;
            for (int64_t o = 0; o < O; ++o) {
                double wsq = 0.0;
                for (int64_t k = 0; k < K; ++k) {
                    a += G(n, o, i, k) * W(o, i, k) * d[size_t(n * O + o)];
                    wsq += W(o, i, k) * W(o, i, k);
                }
                b += gq[size_t(n * O + o)] * wsq;
            }
            gs[size_t(n * I + i)] = a + 2.0 * s[size_t(n * I + i)] * b;
        }
}

// max |a - b| / (atol + rtol * |b|) over the arrays; <= 1 passes.
template <typename T>
void expect_close(const std::vector<T>& a, const std::vector<double>& b, double rtol, double atol,
                  const std::string& what) {
    ++g_checks;
    if (a.size() != b.size()) {
        fail(what + ": size mismatch");
        return;
    }
    for (size_t e = 0; e < a.size(); ++e) {
        const double x = double(a[e]);
        if (!(std::fabs(x - b[e]) <= atol + rtol * std::fabs(b[e]))) {
            char buf[160];
            std::snprintf(buf, sizeof(buf), ": element %zu got %.10g want %.10g", e, x, b[e]);
            fail(what + buf);
            return;
        }
    }
}

// Kernel forward / backward in T on double data (converted in and out).
template <typename T>
void run_kernels(const std::vector<double>& w, const std::vector<double>& s, const std::vector<double>& g,
                 const ModulateParams& p, std::vector<T>& out, std::vector<T>& d, std::vector<T>& gw,
                 std::vector<T>& gs) {
    const std::vector<T> wt(w.begin(), w.end()), st(s.begin(), s.end()), gt(g.begin(), g.end());
    const T nan = std::numeric_limits<T>::quiet_NaN();
    // NaN-filled, so an element the kernels fail to write shows up.
    out.assign(size_t(p.batch * p.out_channels * p.in_channels * p.taps), nan);
    d.assign(size_t(p.batch * p.out_channels), nan);
    gw.assign(size_t(p.out_channels * p.in_channels * p.taps), nan);
    gs.assign(size_t(p.batch * p.in_channels), nan);
    genmix::cpu::modulate_weights<T>(wt.data(), st.data(), out.data(), d.data(), p);
    genmix::cpu::modulate_weights_backward<T>(wt.data(), st.data(), d.data(), gt.data(), gw.data(), gs.data(),
                                              p);
}

std::vector<double> random_vector(std::mt19937_64& rng, size_t n, double lo, double hi) {
    std::uniform_real_distribution<double> u(lo, hi);
    std::vector<double> v(n);
    for (auto& x : v) x = u(rng);
    return v;
}

void check_shape(const Shape& sh, bool demod, bool finite_differences, std::mt19937_64& rng) {
    ModulateParams p;
    p.batch = sh.N;
    p.out_channels = sh.O;
    p.in_channels = sh.I;
    p.taps = sh.K;
    p.demodulate = demod;
    p.eps = 1e-8;
    const size_t nw = size_t(sh.O * sh.I * sh.K), ns = size_t(sh.N * sh.I), ng = size_t(sh.N * sh.O * sh.I * sh.K);
    const std::vector<double> w = random_vector(rng, nw, -1.0, 1.0);
    // Styles away from 0 so that d stays moderate; signs mixed.
    std::vector<double> s = random_vector(rng, ns, 0.5, 1.5);
    for (size_t e = 0; e < ns; e += 3) s[e] = -s[e];
    const std::vector<double> g = random_vector(rng, ng, -1.0, 1.0);

    std::vector<double> out_ref, d_ref, gw_ref, gs_ref;
    ref_forward(w, s, sh, demod, p.eps, out_ref, d_ref);
    ref_backward(w, s, d_ref, g, sh, demod, gw_ref, gs_ref);

    {
        std::vector<float> out, d, gw, gs;
        run_kernels<float>(w, s, g, p, out, d, gw, gs);
        const std::string what = describe(sh, demod, "float");
        expect_close(out, out_ref, 1e-5, 1e-6, what + " out");
        expect_close(d, d_ref, 1e-5, 1e-6, what + " d");
        // Backward sums up to N * O * K terms of mixed sign: absolute slack scaled by that.
        const double scale = 1e-6 * double(sh.N * sh.O * sh.K + 1);
        expect_close(gw, gw_ref, 1e-4, scale, what + " gw");
        expect_close(gs, gs_ref, 1e-4, scale, what + " gs");
    }
    std::vector<double> out, d, gw, gs;
    run_kernels<double>(w, s, g, p, out, d, gw, gs);
    const std::string what = describe(sh, demod, "double");
    expect_close(out, out_ref, 1e-12, 1e-14, what + " out");
    expect_close(d, d_ref, 1e-12, 1e-14, what + " d");
    expect_close(gw, gw_ref, 1e-11, 1e-12, what + " gw");
    expect_close(gs, gs_ref, 1e-11, 1e-12, what + " gs");

    if (!finite_differences) return;
    // L = sum(out * R): its gradient is the backward with g = R, compared with central
    // differences of the double kernel's forward.
    const std::vector<double> R = random_vector(rng, ng, -1.0, 1.0);
    std::vector<double> gw_k, gs_k;
    {
        std::vector<double> o1, d1;
        run_kernels<double>(w, s, R, p, o1, d1, gw_k, gs_k);
    }
    auto loss = [&](const std::vector<double>& wv, const std::vector<double>& sv) {
        std::vector<double> o(ng), dd(size_t(sh.N * sh.O));
        genmix::cpu::modulate_weights<double>(wv.data(), sv.data(), o.data(), dd.data(), p);
        double L = 0.0;
        for (size_t e = 0; e < ng; ++e) L += o[e] * R[e];
        return L;
    };
    const double h = 1e-6;
    std::vector<double> fd_w(nw), fd_s(ns);
    for (size_t e = 0; e < nw; ++e) {
        std::vector<double> wp = w, wm = w;
        wp[e] += h;
        wm[e] -= h;
        fd_w[e] = (loss(wp, s) - loss(wm, s)) / (2 * h);
    }
    for (size_t e = 0; e < ns; ++e) {
        std::vector<double> sp = s, sm = s;
        sp[e] += h;
        sm[e] -= h;
        fd_s[e] = (loss(w, sp) - loss(w, sm)) / (2 * h);
    }
    expect_close(gw_k, fd_w, 1e-6, 1e-7, what + " gw vs finite differences");
    expect_close(gs_k, fd_s, 1e-6, 1e-7, what + " gs vs finite differences");
}

// Empty shapes: nothing crashes and every output with elements is written (zeros / 1 / rsqrt(eps)).
void check_empty(bool demod) {
    const Shape shapes[] = {{0, 3, 4, 9}, {2, 0, 4, 9}, {2, 3, 0, 9}, {2, 3, 4, 0}, {0, 0, 0, 0}};
    std::mt19937_64 rng(7);
    for (const Shape& sh : shapes) {
        ModulateParams p;
        p.batch = sh.N;
        p.out_channels = sh.O;
        p.in_channels = sh.I;
        p.taps = sh.K;
        p.demodulate = demod;
        p.eps = 1e-8;
        const std::vector<double> w = random_vector(rng, size_t(sh.O * sh.I * sh.K), -1, 1);
        const std::vector<double> s = random_vector(rng, size_t(sh.N * sh.I), -1, 1);
        const std::vector<double> g = random_vector(rng, size_t(sh.N * sh.O * sh.I * sh.K), -1, 1);
        std::vector<double> out, d, gw, gs;
        run_kernels<double>(w, s, g, p, out, d, gw, gs);
        const std::string what = describe(sh, demod, "empty");
        const double d_want = demod ? 1.0 / std::sqrt(p.eps) : 1.0;
        expect_close(d, std::vector<double>(d.size(), d_want), 1e-12, 0.0, what + " d");
        expect_close(gw, std::vector<double>(gw.size(), 0.0), 0.0, 0.0, what + " gw");
        expect_close(gs, std::vector<double>(gs.size(), 0.0), 0.0, 0.0, what + " gs");
    }
}

}  // namespace

int main() {
    std::mt19937_64 rng(12345);
    const Shape small[] = {{2, 3, 4, 9}, {1, 5, 3, 1}, {3, 1, 6, 9}, {4, 7, 5, 1}, {1, 1, 1, 1}, {2, 3, 4, 4}};
    const Shape large[] = {{8, 33, 40, 9}, {5, 64, 48, 1}};
    for (int demod = 0; demod < 2; ++demod) {
        for (const Shape& sh : small) check_shape(sh, demod != 0, true, rng);
        for (const Shape& sh : large) check_shape(sh, demod != 0, false, rng);
        check_empty(demod != 0);
    }
    std::printf("%d checks, %d failures\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
