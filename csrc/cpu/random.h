// Counter-based random sampling shared by the CPU kernels (and their tests): Philox4x32-10
// streams, uniforms, Box-Muller normals, log-domain Marsaglia-Tsang Gamma samples, Dirichlet
// rows and Beta(a, 1). params.h ("random sampling and mixing") is the specification; every
// backend follows it step by step so that one seed gives the same numbers everywhere.
//
// Everything is inline and templated on the accumulation type T (float or double): a stream
// is a handful of registers, so each row / sample owns its stream and rows can be processed
// in any order or in parallel without changing a single number.
#pragma once

#include <cmath>
#include <cstdint>

namespace genmix {
namespace cpu {
namespace rng {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr int kMaxGammaTries = 64;

struct Block {
    uint32_t v[4];
};

// Philox4x32 with 10 rounds: the key is bumped by the Weyl constants between rounds (so the
// first round uses the key as given).
inline Block philox4x32_10(Block ctr, uint32_t k0, uint32_t k1) {
    uint32_t c0 = ctr.v[0], c1 = ctr.v[1], c2 = ctr.v[2], c3 = ctr.v[3];
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += kPhiloxW0;
            k1 += kPhiloxW1;
        }
        const uint64_t p0 = uint64_t(kPhiloxM0) * c0;
        const uint64_t p1 = uint64_t(kPhiloxM1) * c2;
        const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
        const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    return Block{{c0, c1, c2, c3}};
}

// The stream (tag, id) under `seed`: block j is philox(counter = (j, tag, id_lo, id_hi),
// key = (seed_lo, seed_hi)), and the words are handed out block by block, word 0 first.
class Stream {
public:
    Stream(uint64_t seed, uint32_t tag, uint64_t id)
        : k0_(uint32_t(seed)), k1_(uint32_t(seed >> 32)), tag_(tag),
          id_lo_(uint32_t(id)), id_hi_(uint32_t(id >> 32)) {}

    uint32_t next_u32() {
        if (pos_ == 4) {
            buf_ = philox4x32_10(Block{{block_, tag_, id_lo_, id_hi_}}, k0_, k1_);
            ++block_;
            pos_ = 0;
        }
        return buf_.v[pos_++];
    }

private:
    uint32_t k0_, k1_, tag_, id_lo_, id_hi_;
    uint32_t block_ = 0;  // index of the next block to generate
    int pos_ = 4;         // next word of buf_; 4 = exhausted
    Block buf_{{0, 0, 0, 0}};
};

// ((u >> 8) + 0.5) * 2^-24 in T. In double this is exact and lies in (0, 1). In float the
// top 2^23 values of u >> 8 need 25 significant bits, so the sum rounds (to even) and the
// very top value gives exactly 1.0f: float uniforms lie in (0, 1]. Nothing downstream minds a
// 1 (log(1) = 0); what matters is that 0 never occurs, so log() stays finite.
template <typename T>
inline T uniform(uint32_t u) {
    return (T(u >> 8) + T(0.5)) * T(1.0 / 16777216.0);
}

template <typename T>
inline T next_uniform(Stream& s) {
    return uniform<T>(s.next_u32());
}

// Box-Muller, cosine half only: one normal per two uniforms keeps every stream's consumption
// simple to reproduce on backends that cannot carry the sine half between calls.
template <typename T>
inline T next_normal(Stream& s) {
    const T u1 = next_uniform<T>(s);
    const T u2 = next_uniform<T>(s);
    return std::sqrt(T(-2) * std::log(u1)) * std::cos(T(6.283185307179586) * u2);
}

// log of a Gamma(a, 1) sample (Marsaglia-Tsang), a > 0. Working in the log domain keeps small
// concentrations usable in float: the a < 1 boost multiplies by u^(1/a), which for a = 0.01
// underflows to 0 in linear space but is just log(u) / a (>= -1730) here.
template <typename T>
inline T log_gamma_sample(Stream& s, T a) {
    const bool boost = a < T(1);
    const T b = boost ? a + T(1) : a;
    const T d = b - T(1) / T(3);
    const T c = T(1) / std::sqrt(T(9) * d);
    const T log_d = std::log(d);
    T result = log_d;  // the value if every try is rejected (practically never)
    for (int t = 0; t < kMaxGammaTries; ++t) {
        const T z = next_normal<T>(s);
        T v = T(1) + c * z;
        if (v <= T(0)) continue;
        v = v * v * v;
        const T u = next_uniform<T>(s);
        const T log_v = std::log(v);
        if (std::log(u) < T(0.5) * z * z + d - d * v + d * log_v) {
            result = log_d + log_v;
            break;
        }
    }
    // Drawn after the loop (not before), as the specification orders the stream.
    if (boost) result += std::log(next_uniform<T>(s)) / a;
    return result;
}

// One Dirichlet(alpha[0..k-1]) row from stream s into out[0..k-1]: log-gammas drawn in order,
// then a max-subtracted softmax. The largest term is exp(0) = 1, so the sum is >= 1 and the
// division can neither overflow nor produce NaN, whatever the spread of the log-gammas.
template <typename T>
inline void dirichlet(Stream& s, const T* alpha, int64_t k, T* out) {
    if (k <= 0) return;
    T m = -INFINITY;
    for (int64_t i = 0; i < k; ++i) {
        out[i] = log_gamma_sample<T>(s, alpha[i]);
        m = out[i] > m ? out[i] : m;
    }
    T sum = T(0);
    for (int64_t i = 0; i < k; ++i) {
        out[i] = std::exp(out[i] - m);
        sum += out[i];
    }
    for (int64_t i = 0; i < k; ++i) out[i] /= sum;
}

// Beta(a, 1) exactly by inversion: its CDF is x^a, so u^(1/a) = exp(log(u) / a), one uniform.
template <typename T>
inline T beta_a1(Stream& s, T a) {
    return std::exp(std::log(next_uniform<T>(s)) / a);
}

}  // namespace rng
}  // namespace cpu
}  // namespace genmix
