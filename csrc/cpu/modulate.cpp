// Modulated convolution weights on the CPU (see ModulateParams for the exact definition).
//
// Every (n, o) pair owns one contiguous row of I * K values in out and g, and the rows are
// what the loops walk. To keep the inner loops flat and vectorisable whatever K is, the styles
// are expanded once to s_rep[n, i * K + k] = s[n, i] (N * I * K values, O times smaller than
// out), so out, g, w and s_rep are all read with the same running index.
//
// Forward: sum_{i,k} (w s)^2 = sum_i s[n,i]^2 * wsq[o,i] with wsq = sum_k w^2 computed once, so
// d[n, o] costs I multiply-adds instead of I * K, and out is written in one pass.
// Backward: g (the big array) is read once. The work is split over o: for each (n, o) row the
// thread computes gd (and so gq), adds the row's share to gw[o, :] (owned by that thread) and
// to a thread-private partial of gs[n, :]; the partials are summed at the end. The row stays in
// cache between the few loops that walk it.

#include <cmath>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"

namespace genmix {
namespace cpu {
namespace {

bool valid(const ModulateParams& p) {
    return p.batch >= 0 && p.out_channels >= 0 && p.in_channels >= 0 && p.taps >= 0;
}

// s_rep[n, i * K + k] = s[n, i], see the top of the file.
template <typename T>
std::vector<T> repeat_styles(const T* s, int64_t N, int64_t I, int64_t K) {
    std::vector<T> rep(size_t(N * I * K));
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        T* dst = rep.data() + n * I * K;
        for (int64_t i = 0; i < I; ++i) {
            const T v = s[n * I + i];
            for (int64_t k = 0; k < K; ++k) dst[i * K + k] = v;
        }
    }
    return rep;
}

// wsq[i] = sum_k w[i, k]^2 for one output channel's row of w.
template <typename T>
inline void row_sum_squares(const T* w_row, int64_t I, int64_t K, T* wsq) {
    for (int64_t i = 0; i < I; ++i) {
        T acc = T(0);
        for (int64_t k = 0; k < K; ++k) acc += w_row[i * K + k] * w_row[i * K + k];
        wsq[i] = acc;
    }
}

}  // namespace

template <typename T>
void modulate_weights(const T* w, const T* s, T* out, T* d, const ModulateParams& p) {
    if (!valid(p)) return;
    const int64_t N = p.batch, O = p.out_channels, I = p.in_channels, K = p.taps;
    const int64_t IK = I * K;
    if (N == 0 || O == 0) return;
    const T eps = T(p.eps);

    std::vector<T> wsq;
    if (p.demodulate) {
        wsq.resize(size_t(O * I));
#pragma omp parallel for schedule(static)
        for (int64_t o = 0; o < O; ++o) row_sum_squares(w + o * IK, I, K, wsq.data() + o * I);
    }
    const std::vector<T> s_rep = repeat_styles(s, N, I, K);

    // One (n, o) row per iteration: its d (I terms), then its I * K outputs.
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N * O; ++r) {
        const int64_t n = r / O, o = r - n * O;
        T dr = T(1);
        if (p.demodulate) {
            const T* sn = s + n * I;
            const T* wq = wsq.data() + o * I;
            T acc = T(0);
#pragma omp simd reduction(+ : acc)
            for (int64_t i = 0; i < I; ++i) acc += sn[i] * sn[i] * wq[i];
            dr = T(1) / std::sqrt(acc + eps);
        }
        d[r] = dr;
        const T* wr = w + o * IK;
        const T* sr = s_rep.data() + n * IK;
        T* orow = out + r * IK;
#pragma omp simd
        for (int64_t j = 0; j < IK; ++j) orow[j] = wr[j] * sr[j] * dr;
    }
}

template <typename T>
void modulate_weights_backward(const T* w, const T* s, const T* d, const T* g, T* gw, T* gs,
                               const ModulateParams& p) {
    if (!valid(p)) return;
    const int64_t N = p.batch, O = p.out_channels, I = p.in_channels, K = p.taps;
    const int64_t IK = I * K;
    const bool demod = p.demodulate;

    const std::vector<T> s_rep = repeat_styles(s, N, I, K);
    // Squared styles, for the gq terms of gw.
    std::vector<T> s2(size_t(N * I));
    for (int64_t e = 0; e < N * I; ++e) s2[size_t(e)] = s[e] * s[e];

#ifdef _OPENMP
    const int nthreads = omp_get_max_threads();
#else
    const int nthreads = 1;
#endif
    // Per-thread partial sums of gs over that thread's output channels.
    std::vector<T> gs_part(size_t(nthreads) * size_t(N * I), T(0));

#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        T* part = gs_part.data() + size_t(tid) * size_t(N * I);
        std::vector<T> wsq(static_cast<size_t>(I)), gq(static_cast<size_t>(N)), t(static_cast<size_t>(I)),
            gwk(static_cast<size_t>(I));

#pragma omp for schedule(static)
        for (int64_t o = 0; o < O; ++o) {
            const T* wr = w + o * IK;
            T* gwr = gw + o * IK;
            for (int64_t j = 0; j < IK; ++j) gwr[j] = T(0);
            if (demod) row_sum_squares(wr, I, K, wsq.data());

            for (int64_t n = 0; n < N; ++n) {
                const int64_t r = n * O + o;
                const T* gr = g + r * IK;
                const T* sr = s_rep.data() + n * IK;
                const T dr = d[r];
                // gw += g s d over this row; gd = sum g w s.
                T gd = T(0);
#pragma omp simd reduction(+ : gd)
                for (int64_t j = 0; j < IK; ++j) {
                    gwr[j] += gr[j] * sr[j] * dr;
                    gd += gr[j] * wr[j] * sr[j];
                }
                const T gqr = demod ? T(-0.5) * dr * dr * dr * gd : T(0);
                gq[size_t(n)] = gqr;

                // gs[n, i] += d sum_k g w + 2 s gq wsq (the row is still in cache).
                T* pn = part + n * I;
                const T* sn = s + n * I;
                if (K == 1) {  // 1x1 convolutions: a flat loop the compiler vectorises
#pragma omp simd
                    for (int64_t i = 0; i < I; ++i) gwk[size_t(i)] = gr[i] * wr[i];
                } else {
                    for (int64_t i = 0; i < I; ++i) {
                        T acc = T(0);
                        for (int64_t k = 0; k < K; ++k) acc += gr[i * K + k] * wr[i * K + k];
                        gwk[size_t(i)] = acc;
                    }
                }
                if (demod) {
#pragma omp simd
                    for (int64_t i = 0; i < I; ++i)
                        pn[i] += dr * gwk[size_t(i)] + T(2) * sn[i] * gqr * wsq[size_t(i)];
                } else {
#pragma omp simd
                    for (int64_t i = 0; i < I; ++i) pn[i] += dr * gwk[size_t(i)];
                }
            }

            // gw[o, i, k] += 2 w sum_n gq[n, o] s[n, i]^2.
            if (demod) {
                for (int64_t i = 0; i < I; ++i) t[size_t(i)] = T(0);
                for (int64_t n = 0; n < N; ++n) {
                    const T gqn = gq[size_t(n)];
                    const T* s2n = s2.data() + n * I;
#pragma omp simd
                    for (int64_t i = 0; i < I; ++i) t[size_t(i)] += gqn * s2n[i];
                }
                for (int64_t i = 0; i < I; ++i) {
                    const T ti = T(2) * t[size_t(i)];
                    for (int64_t k = 0; k < K; ++k) gwr[i * K + k] += wr[i * K + k] * ti;
                }
            }
        }
    }

    // Sum the per-thread partials (fixed order, so results do not depend on scheduling).
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < N * I; ++e) {
        T acc = T(0);
        for (int th = 0; th < nthreads; ++th) acc += gs_part[size_t(th) * size_t(N * I) + size_t(e)];
        gs[e] = acc;
    }
}

template void modulate_weights<float>(const float*, const float*, float*, float*, const ModulateParams&);
template void modulate_weights<double>(const double*, const double*, double*, double*,
                                       const ModulateParams&);
template void modulate_weights_backward<float>(const float*, const float*, const float*, const float*,
                                               float*, float*, const ModulateParams&);
template void modulate_weights_backward<double>(const double*, const double*, const double*,
                                                const double*, double*, double*, const ModulateParams&);

}  // namespace cpu
}  // namespace genmix
