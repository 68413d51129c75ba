// Unit test of the CPU upfirdn2d kernel against a direct evaluation of the definition in
// params.h, over random shapes, factors, paddings, filters and memory layouts.
// Exit code 0 when every check passes.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/kernels.h"

using genmix::Upfirdn2dParams;

namespace {

// Memory layout of a 4-D tensor: element strides and the storage size they need.
struct Layout {
    int64_t stride[4];
    int64_t storage;
};

enum LayoutKind { kContiguous = 0, kChannelsLast = 1, kScrambled = 2 };

// kScrambled: a random dimension order with gaps between rows/planes and sometimes a
// non-unit innermost stride, so the kernel cannot rely on any particular packing.
Layout make_layout(const int64_t size[4], int kind, std::mt19937_64& rng) {
    int order[4] = {3, 2, 1, 0};  // innermost first
    int64_t unit = 1, gap[4] = {0, 0, 0, 0};
    if (kind == kChannelsLast) {
        order[0] = 1;
        order[1] = 3;
        order[2] = 2;
        order[3] = 0;
    } else if (kind == kScrambled) {
        std::shuffle(order, order + 4, rng);
        unit = 1 + static_cast<int64_t>(rng() % 2);
        for (auto& g : gap) g = static_cast<int64_t>(rng() % 3);
    }
    Layout l{};
    int64_t s = unit;
    for (int k = 0; k < 4; ++k) {
        l.stride[order[k]] = s;
        s = s * size[order[k]] + gap[k];
    }
    l.storage = 1;
    for (int d = 0; d < 4; ++d) l.storage += (size[d] - 1) * l.stride[d];
    return l;
}

struct Case {
    int64_t n, c, h, w;
    int up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, fh, fw;
    bool flip;
    float gain;
    int in_kind, out_kind;
};

std::string describe(const Case& k) {
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  "x=%lldx%lldx%lldx%lld up=(%d,%d) down=(%d,%d) pad=(%d,%d,%d,%d) f=%dx%d "
                  "flip=%d gain=%g layout in=%d out=%d",
                  (long long)k.n, (long long)k.c, (long long)k.h, (long long)k.w, k.up_x, k.up_y,
                  k.down_x, k.down_y, k.pad_x0, k.pad_x1, k.pad_y0, k.pad_y1, k.fh, k.fw, k.flip,
                  k.gain, k.in_kind, k.out_kind);
    return buf;
}

int64_t out_size(int64_t in, int up, int pad0, int pad1, int taps, int down) {
    const int64_t num = in * up + pad0 + pad1 - taps;
    return num < 0 ? 0 : num / down + 1;  // (floor division; <= 0 means empty)
}

// Runs one case in precision T; returns false (and reports) on a mismatch.
template <typename T>
bool run_case(const Case& k, std::mt19937_64& rng) {
    const int64_t oh = out_size(k.h, k.up_y, k.pad_y0, k.pad_y1, k.fh, k.down_y);
    const int64_t ow = out_size(k.w, k.up_x, k.pad_x0, k.pad_x1, k.fw, k.down_x);
    if (oh <= 0 || ow <= 0) return true;
    const int64_t in_size[4] = {k.n, k.c, k.h, k.w};
    const int64_t out_sz[4] = {k.n, k.c, oh, ow};
    const Layout li = make_layout(in_size, k.in_kind, rng);
    const Layout lo = make_layout(out_sz, k.out_kind, rng);

    std::uniform_real_distribution<double> uni(-1.0, 1.0);
    // Gaps in the input hold NaN: reading one would poison an output and fail the test.
    std::vector<T> x(li.storage, std::numeric_limits<T>::quiet_NaN());
    for (int64_t a = 0; a < k.n; ++a)
        for (int64_t b = 0; b < k.c; ++b)
            for (int64_t i = 0; i < k.h; ++i)
                for (int64_t j = 0; j < k.w; ++j)
                    x[a * li.stride[0] + b * li.stride[1] + i * li.stride[2] + j * li.stride[3]] =
                        static_cast<T>(uni(rng));
    std::vector<T> f(static_cast<size_t>(k.fh) * k.fw);
    for (auto& v : f) v = static_cast<T>(uni(rng));
    // Gaps in the output must come back untouched.
    const T sentinel = T(12345.5);
    std::vector<T> y(lo.storage, sentinel);
    std::vector<char> is_out(lo.storage, 0);

    Upfirdn2dParams p;
    p.batch = k.n;
    p.channels = k.c;
    p.in_h = k.h;
    p.in_w = k.w;
    p.out_h = oh;
    p.out_w = ow;
    for (int d = 0; d < 4; ++d) {
        p.in_stride[d] = li.stride[d];
        p.out_stride[d] = lo.stride[d];
    }
    p.up_x = k.up_x;
    p.up_y = k.up_y;
    p.down_x = k.down_x;
    p.down_y = k.down_y;
    p.pad_x0 = k.pad_x0;
    p.pad_y0 = k.pad_y0;
    p.filter_h = k.fh;
    p.filter_w = k.fw;
    p.flip_filter = k.flip;
    p.gain = k.gain;
    genmix::cpu::upfirdn2d<T>(x.data(), f.data(), y.data(), p);

    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-10;
    bool ok = true;
    double worst = 0;
    for (int64_t a = 0; a < k.n; ++a)
        for (int64_t b = 0; b < k.c; ++b)
            for (int64_t oy = 0; oy < oh; ++oy)
                for (int64_t ox = 0; ox < ow; ++ox) {
                    // Direct evaluation of the definition, in double.
                    double sum = 0, mag = 0;
                    for (int ky = 0; ky < k.fh; ++ky)
                        for (int kx = 0; kx < k.fw; ++kx) {
                            const int64_t qy = oy * k.down_y + ky - k.pad_y0;
                            const int64_t qx = ox * k.down_x + kx - k.pad_x0;
                            if (qy < 0 || qx < 0 || qy % k.up_y != 0 || qx % k.up_x != 0) continue;
                            const int64_t iy = qy / k.up_y, ix = qx / k.up_x;
                            if (iy >= k.h || ix >= k.w) continue;
                            const double wv = k.flip ? f[ky * k.fw + kx]
                                                     : f[(k.fh - 1 - ky) * k.fw + (k.fw - 1 - kx)];
                            const double xv = x[a * li.stride[0] + b * li.stride[1] +
                                                iy * li.stride[2] + ix * li.stride[3]];
                            sum += wv * xv;
                            mag += std::fabs(wv * xv);
                        }
                    sum *= k.gain;
                    mag *= std::fabs(k.gain);
                    const int64_t at = a * lo.stride[0] + b * lo.stride[1] + oy * lo.stride[2] +
                                       ox * lo.stride[3];
                    is_out[at] = 1;
                    const double got = y[at];
                    // Relative to the sum of |terms|: the scale of the rounding error.
                    const double err = std::fabs(got - sum);
                    if (!(err <= tol * mag)) {
                        ok = false;
                        worst = std::max(worst, mag > 0 ? err / mag : err);
                        if (std::isnan(err)) worst = std::numeric_limits<double>::infinity();
                    }
                }
    for (int64_t i = 0; i < lo.storage; ++i)
        if (!is_out[i] && !(y[i] == sentinel)) {
            ok = false;
            fail(describe(k) + " wrote outside the output");
            break;
        }
    ++g_checks;
    if (!ok) {
        char buf[64];
        std::snprintf(buf, sizeof buf, " worst rel err %.3g (%s)", worst,
                      sizeof(T) == 4 ? "float" : "double");
        fail(describe(k) + buf);
    }
    return ok;
}

template <typename T>
void run_all_layouts(Case k, std::mt19937_64& rng) {
    for (int kind : {kContiguous, kChannelsLast, kScrambled}) {
        k.in_kind = k.out_kind = kind;
        run_case<T>(k, rng);
    }
}

Case random_case(std::mt19937_64& rng) {
    static const int filters[][2] = {{1, 1}, {1, 4}, {4, 1}, {3, 3}, {4, 4}, {5, 7}, {2, 5}, {6, 2}};
    static const float gains[] = {1.0f, 4.0f, 0.5f, -2.0f};
    auto r = [&](int lo, int hi) { return lo + static_cast<int>(rng() % (hi - lo + 1)); };
    Case k{};
    k.n = r(1, 2);
    // Some cases with enough channels for the channels-last loop order.
    k.c = rng() % 4 == 0 ? r(8, 12) : r(1, 5);
    k.h = r(1, 12);
    k.w = r(1, 12);
    k.up_x = r(1, 3);
    k.up_y = r(1, 3);
    k.down_x = r(1, 3);
    k.down_y = r(1, 3);
    k.pad_x0 = r(-3, 4);
    k.pad_x1 = r(-3, 4);
    k.pad_y0 = r(-3, 4);
    k.pad_y1 = r(-3, 4);
    const auto& fs = filters[rng() % (sizeof filters / sizeof filters[0])];
    k.fh = fs[0];
    k.fw = fs[1];
    k.flip = rng() % 2;
    k.gain = gains[rng() % 4];
    k.in_kind = r(0, 2);
    k.out_kind = rng() % 3 == 0 ? r(0, 2) : k.in_kind;
    return k;
}

Case fixed_case(int64_t n, int64_t c, int64_t h, int64_t w, int up, int down, int pad0, int pad1,
                int fh, int fw, bool flip, float gain) {
    Case k{};
    k.n = n;
    k.c = c;
    k.h = h;
    k.w = w;
    k.up_x = k.up_y = up;
    k.down_x = k.down_y = down;
    k.pad_x0 = k.pad_y0 = pad0;
    k.pad_x1 = k.pad_y1 = pad1;
    k.fh = fh;
    k.fw = fw;
    k.flip = flip;
    k.gain = gain;
    return k;
}

template <typename T>
void run_suite(const char* name) {
    const int before = g_failures;
    const int checks_before = g_checks;
    std::mt19937_64 rng(sizeof(T) == 4 ? 1234 : 5678);

    // The resampling configurations that matter most, on all layouts, at sizes that exercise
    // the banded and multi-threaded paths too.
    for (int64_t res : {4, 8, 17, 32}) {
        run_all_layouts<T>(fixed_case(2, 9, res, res, 2, 1, 2, 1, 4, 4, false, 4.0f), rng);
        run_all_layouts<T>(fixed_case(2, 9, res, res, 1, 2, 1, 1, 4, 4, false, 1.0f), rng);
        run_all_layouts<T>(fixed_case(1, 3, res, res + 3, 2, 1, 2, 1, 4, 4, true, 4.0f), rng);
        run_all_layouts<T>(fixed_case(1, 3, res + 1, res, 1, 2, 1, 1, 4, 4, true, 1.0f), rng);
    }
    // One big plane: split into bands across threads.
    run_all_layouts<T>(fixed_case(1, 1, 300, 190, 2, 1, 2, 1, 4, 4, false, 4.0f), rng);
    run_all_layouts<T>(fixed_case(1, 2, 301, 190, 1, 2, 1, 1, 4, 4, false, 1.0f), rng);
    run_all_layouts<T>(fixed_case(1, 16, 80, 64, 3, 2, 3, -2, 5, 7, true, 1.5f), rng);
    // Larger filters and factors, identity, heavy crops and pads that leave only zeros.
    run_all_layouts<T>(fixed_case(1, 2, 4, 4, 4, 1, 6, 5, 12, 12, false, 16.0f), rng);
    run_all_layouts<T>(fixed_case(1, 2, 3, 3, 1, 1, 4, 4, 9, 9, false, 1.0f), rng);
    run_all_layouts<T>(fixed_case(1, 2, 6, 6, 1, 1, 0, 0, 1, 1, false, 1.0f), rng);
    run_all_layouts<T>(fixed_case(1, 2, 6, 6, 1, 1, -2, -1, 1, 1, false, 1.0f), rng);
    run_all_layouts<T>(fixed_case(1, 9, 4, 5, 1, 1, 9, -2, 3, 3, false, 1.0f), rng);
    run_all_layouts<T>(fixed_case(1, 9, 4, 5, 2, 3, -9, 12, 4, 4, true, 1.0f), rng);
    run_all_layouts<T>(fixed_case(2, 3, 9, 9, 3, 3, 0, 0, 3, 3, false, 1.0f), rng);
    run_all_layouts<T>(fixed_case(1, 9, 1, 1, 3, 1, 2, 2, 5, 7, false, 1.0f), rng);
    // Short output rows from a crop or a large down factor: only part of the input is read.
    run_all_layouts<T>(fixed_case(2, 9, 40, 40, 1, 1, -30, -4, 3, 3, false, 1.0f), rng);
    run_all_layouts<T>(fixed_case(1, 17, 64, 64, 1, 8, 2, 2, 4, 4, true, 1.0f), rng);
    {
        Case k = fixed_case(1, 9, 200, 64, 1, 1, 1, 1, 4, 4, false, 1.0f);
        k.down_x = 8;  // 8 outputs per row but a big input window
        run_all_layouts<T>(k, rng);
    }

    for (int i = 0; i < 3000; ++i) run_case<T>(random_case(rng), rng);
    std::printf("%s: %d cases, %d failed\n", name, g_checks - checks_before, g_failures - before);
}

}  // namespace

int main() {
    run_suite<float>("upfirdn2d float");
    run_suite<double>("upfirdn2d double");
    if (g_failures) {
        std::printf("%d FAILED\n", g_failures);
        return 1;
    }
    std::printf("all passed\n");
    return 0;
}
