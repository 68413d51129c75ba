// Random sampling and batch mixing on the GPU: sample_dirichlet and mix_batch (see the section
// "random sampling and mixing" of params.h for the exact definitions).
//
// The random numbers come from counter-based Philox streams, so any thread can regenerate any
// stream on its own: no generator state lives in memory and nothing has to be drawn up front.
// mix_batch uses that to fuse sampling and mixing into a single launch: each block rebuilds the
// weights of the sample it works on, then mixes its share of that sample's elements.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstring>

#include "elem.cuh"
#include "launchers.h"

namespace genmix {
namespace cuda {
namespace {

// ------------------------------------------------------------------------------ Philox streams

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

// Philox4x32-10 of one counter block.
__device__ __forceinline__ uint4 philox4x32_10(uint4 ctr, uint32_t k0, uint32_t k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += kPhiloxW0;
            k1 += kPhiloxW1;
        }
        const uint32_t lo0 = kPhiloxM0 * ctr.x;
        const uint32_t hi0 = __umulhi(kPhiloxM0, ctr.x);
        const uint32_t lo1 = kPhiloxM1 * ctr.z;
        const uint32_t hi1 = __umulhi(kPhiloxM1, ctr.z);
        ctr = make_uint4(hi1 ^ ctr.y ^ k0, lo1, hi0 ^ ctr.w ^ k1, lo0);
    }
    return ctr;
}

// The uint32 sequence of stream (tag, id): block j is philox(counter = (j, tag, id_lo, id_hi)).
// The current block is kept as four named words and shifted out, rather than indexed, so it
// stays in registers.
class Stream {
public:
    __device__ Stream(uint64_t seed, uint32_t tag, uint64_t id)
        : k0_(uint32_t(seed)), k1_(uint32_t(seed >> 32)), tag_(tag), id_lo_(uint32_t(id)),
          id_hi_(uint32_t(id >> 32)) {}

    __device__ __forceinline__ uint32_t next() {
        if (left_ == 0) {
            const uint4 r = philox4x32_10(make_uint4(block_, tag_, id_lo_, id_hi_), k0_, k1_);
            ++block_;
            w0_ = r.x;
            w1_ = r.y;
            w2_ = r.z;
            w3_ = r.w;
            left_ = 4;
        }
        const uint32_t v = w0_;
        w0_ = w1_;
        w1_ = w2_;
        w2_ = w3_;
        --left_;
        return v;
    }

private:
    uint32_t k0_, k1_, tag_, id_lo_, id_hi_;
    uint32_t block_ = 0;
    uint32_t w0_ = 0, w1_ = 0, w2_ = 0, w3_ = 0;
    int left_ = 0;
};

// ------------------------------------------------------------------ distributions, in type A
//
// Precise library math (never the fast intrinsics), and the products and sums of the sampling
// formulas are rounded one operation at a time (the _rn intrinsics are never fused into FMAs).
// A fused multiply-add rounds differently from the plain evaluation of the other backends, and
// in the rejection test of the gamma sampler a last-bit difference can flip accept/reject and
// shift the whole rest of the stream, so the formulas are kept literal.

constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr int kGammaTries = 64;

// ((u >> 8) + 0.5) * 2^-24: the top 24 bits, centred in their cell, so 0 is never produced
// and log() below is always finite.
template <typename A>
__device__ __forceinline__ A uniform(uint32_t u) {
    return Math<A>::mul(Math<A>::add(A(u >> 8), A(0.5)), A(1.0 / 16777216.0));
}

template <typename A>
__device__ __forceinline__ A uniform(Stream& s) {
    return uniform<A>(s.next());
}

// Box-Muller, cosine half only; u1 is drawn before u2.
template <typename A>
__device__ __forceinline__ A normal(Stream& s) {
    using M = Math<A>;
    const A u1 = uniform<A>(s);
    const A u2 = uniform<A>(s);
    return M::mul(M::sqrt(M::mul(A(-2), M::log(u1))), M::cos(M::mul(A(kTwoPi), u2)));
}

// log of a Gamma(a, 1) sample, Marsaglia-Tsang with the a < 1 boost, in the log domain so that
// small concentrations do not underflow to 0 (and later to 0/0 in the normalisation).
template <typename A>
__device__ A log_gamma_sample(Stream& s, A a) {
    using M = Math<A>;
    const bool boost = a < A(1);
    const A b = boost ? M::add(a, A(1)) : a;
    const A d = M::sub(b, A(1) / A(3));
    const A c = A(1) / M::sqrt(M::mul(A(9), d));
    A result = M::log(d);  // what an all-rejected run yields
    for (int t = 0; t < kGammaTries; ++t) {
        const A z = normal<A>(s);
        A v = M::add(A(1), M::mul(c, z));
        if (v <= A(0)) continue;
        v = M::mul(M::mul(v, v), v);
        const A u = uniform<A>(s);
        const A lv = M::log(v);
        // 0.5 z^2 + d - d v + d log(v), evaluated left to right.
        A bound = M::add(M::mul(A(0.5), M::mul(z, z)), d);
        bound = M::sub(bound, M::mul(d, v));
        bound = M::add(bound, M::mul(d, lv));
        if (M::log(u) < bound) {
            result = M::add(M::log(d), lv);
            break;
        }
    }
    if (boost) result = M::add(result, M::log(uniform<A>(s)) / a);
    return result;
}

// Dirichlet(alpha_0..alpha_{K-1}) on one stream: log-gammas in order, then a max-shifted
// softmax. `buf` holds the log-gammas between the passes and receives the probabilities; it may
// be global memory (so K is unbounded), and alpha_of(k) is read before buf[k] is written, which
// keeps alpha and buf aliasing safe.
template <typename A, typename AlphaOf, typename Buf>
__device__ void dirichlet(Stream& s, int64_t K, const AlphaOf& alpha_of, Buf* buf) {
    using M = Math<A>;
    A gmax = A(0);
    for (int64_t k = 0; k < K; ++k) {
        const A g = log_gamma_sample<A>(s, A(alpha_of(k)));
        gmax = (k == 0 || g > gmax) ? g : gmax;
        buf[k] = Buf(g);
    }
    A sum = A(0);
    for (int64_t k = 0; k < K; ++k) {
        const A e = M::exp(M::sub(A(buf[k]), gmax));
        buf[k] = Buf(e);
        sum = M::add(sum, e);
    }
    for (int64_t k = 0; k < K; ++k) buf[k] = Buf(A(buf[k]) / sum);
}

// -------------------------------------------------------------------------- sample_dirichlet

constexpr int kDirichletThreads = 128;
constexpr int64_t kDirichletMaxBlocks = 65536;

template <typename T>
struct AlphaRow {
    const T* row;
    __device__ __forceinline__ T operator()(int64_t k) const { return row[k]; }
};

// One thread per row: rows are independent streams, and within a row the stream is sequential
// (the number of draws of each gamma depends on its rejections), so a row cannot be split.
// The row's log-gammas are staged in `out` itself, which keeps any K correct without a
// per-thread buffer.
template <typename T>
__global__ void __launch_bounds__(kDirichletThreads)
dirichlet_kernel(const T* alpha, T* out, const DirichletParams p) {
    const int64_t step = int64_t(gridDim.x) * kDirichletThreads;
    for (int64_t r = int64_t(blockIdx.x) * kDirichletThreads + threadIdx.x; r < p.rows; r += step) {
        Stream s(p.seed, kTagDirichlet, uint64_t(r));
        const AlphaRow<T> alpha_of{alpha + r * p.k};
        dirichlet<T>(s, p.k, alpha_of, out + r * p.k);
    }
}

template <typename T>
cudaError_t launch_dirichlet(const void* alpha, void* out, const DirichletParams& p, cudaStream_t stream) {
    int64_t blocks = (p.rows + kDirichletThreads - 1) / kDirichletThreads;
    blocks = blocks < kDirichletMaxBlocks ? blocks : kDirichletMaxBlocks;
    dirichlet_kernel<T><<<dim3(unsigned(blocks)), dim3(kDirichletThreads), 0, stream>>>(
        static_cast<const T*>(alpha), static_cast<T*>(out), p);
    return cudaGetLastError();
}

// --------------------------------------------------------------------------------- mix_batch

constexpr int kMixThreads = 256;
// Elements per thread per step, by image type: one 16-byte load per source for uint8 (16
// elements), half and bfloat16 (8), two for float32 (8), so every thread keeps at least 16 bytes
// per source in flight. Stores are then 16 to 64 bytes, depending on the output type.
template <typename TX>
constexpr int kVecOf = sizeof(TX) >= 2 ? 8 : 16;
// Chunk (elements of one sample per block) bounds, and the block count the chunk is shrunk
// towards: big chunks amortise the per-block weight sampling, but a batch of small samples must
// still spread over every SM.
constexpr int64_t kMaxChunk = 16384;
constexpr int64_t kMinChunk = 1024;
constexpr int64_t kTargetBlocks = 1024;

// Image element -> float. uint8 has no entry in Elem (it is an input-only type here).
template <typename T>
__device__ __forceinline__ float to_float(T v) {
    return Elem<T>::load(v);
}
template <>
__device__ __forceinline__ float to_float<uint8_t>(uint8_t v) {
    return float(v);
}

// V elements at p, 16-byte aligned, read through the non-coherent cache (this kernel never
// writes the sources).
template <int V, typename T>
__device__ __forceinline__ void load_vec(const T* p, T (&e)[V]) {
    constexpr int kWords = V * int(sizeof(T)) / 16;
    static_assert(kWords * 16 == V * int(sizeof(T)), "vector is not a multiple of 16 bytes");
    const uint4* q = reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int w = 0; w < kWords; ++w) {
        const uint4 r = __ldg(q + w);
        memcpy(e + w * (V / kWords), &r, sizeof(r));
    }
}

template <int V, typename T>
__device__ __forceinline__ void store_vec(T* p, const T (&e)[V]) {
    constexpr int kWords = V * int(sizeof(T)) / 16;
    static_assert(kWords * 16 == V * int(sizeof(T)), "vector is not a multiple of 16 bytes");
    uint4* q = reinterpret_cast<uint4*>(p);
#pragma unroll
    for (int w = 0; w < kWords; ++w) {
        uint4 r;
        memcpy(&r, e + w * (V / kWords), sizeof(r));
        q[w] = r;
    }
}

struct ConstAlpha {
    float a;
    __device__ __forceinline__ float operator()(int64_t) const { return a; }
};

// The weights of sample n (stream (kTagMix, n)), in float.
__device__ void mix_weights(const MixParams& p, int S, int64_t n, float (&w)[kMaxMixSources]) {
    Stream s(p.seed, kTagMix, uint64_t(n));
    const float alpha = float(p.alpha);
    const ConstAlpha alpha_of{alpha};
    if (p.dist == kMixBetaA1) {
        // Beta(a, 1) has the closed-form inverse CDF u^(1/a).
        w[0] = ::expf(::logf(uniform<float>(s)) / alpha);
        w[1] = __fsub_rn(1.0f, w[0]);
    } else if (p.dist == kMixBeta) {
        dirichlet<float>(s, 2, alpha_of, w);
        // MixParams defines w1 as 1 - w0, not as the softmax's second entry.
        w[1] = __fsub_rn(1.0f, w[0]);
    } else {
        dirichlet<float>(s, S, alpha_of, w);
    }
}

// Block b of the grid (strided when the grid is capped) handles chunk c = b % chunks of sample
// n = b / chunks: elements [c * chunk, min((c + 1) * chunk, sample_numel)) of that sample.
// Thread 0 samples the weights into shared memory while the other threads already issue their
// first loads (which do not depend on the weights), so the serial sampling overlaps the memory
// latency. The chunk-0 block of a sample also writes its weights and mixed labels.
//
// NS is the number of sources when fixed at compile time (0: p.sources at run time). out_x must
// not overlap the sources (they are read through the non-coherent cache). The launch bounds
// keep the common two-source kernels at 64 registers, i.e. 4 blocks (half the threads) per SM,
// so enough loads are in flight while some blocks are still sampling their weights.
template <typename TX, typename TO, int NS>
__global__ void __launch_bounds__(kMixThreads, NS == 2 ? 4 : 2)
mix_kernel(const MixPointers src, TO* __restrict__ out_x, float* __restrict__ out_y,
           float* __restrict__ weights, const MixParams p, const int64_t chunk, const int64_t chunks,
           const bool vec) {
    __shared__ float s_w[kMaxMixSources];   // the weights
    __shared__ float s_ws[kMaxMixSources];  // the weights times scale, for the images

    constexpr int V = kVecOf<TX>;
    const int S = NS > 0 ? NS : p.sources;
    const int tid = int(threadIdx.x);
    const int64_t L = p.sample_numel;
    const int64_t total = p.batch * chunks;

    for (int64_t b = blockIdx.x; b < total; b += gridDim.x) {
        const int64_t n = b / chunks;
        const int64_t c = b - n * chunks;
        const int64_t lo = c * chunk;
        const int64_t g0 = n * L + lo;                              // first element (flat)
        const int64_t g1 = n * L + (lo + chunk < L ? lo + chunk : L);  // one past the last
        // The aligned middle [va, vb) goes in vectors; the ragged ends element by element.
        int64_t va = (g0 + V - 1) / V * V;
        int64_t vb = g1 / V * V;
        if (!vec || va >= vb) va = vb = g1;
        const int64_t vstep = int64_t(kMixThreads) * V;

        TX e[kMaxMixSources][V];
        int64_t k = va + int64_t(tid) * V;
        if (k < vb) {
#pragma unroll
            for (int s = 0; s < kMaxMixSources; ++s)
                if (s < S) load_vec<V>(static_cast<const TX*>(src.x[s]) + k, e[s]);
        }

        if (tid == 0) {
            float w[kMaxMixSources];
            mix_weights(p, S, n, w);
            const float scale = float(p.scale);
            for (int s = 0; s < S; ++s) {
                s_w[s] = w[s];
                s_ws[s] = w[s] * scale;
            }
        }
        __syncthreads();

        float ws[kMaxMixSources];
#pragma unroll
        for (int s = 0; s < kMaxMixSources; ++s) ws[s] = s < S ? s_ws[s] : 0.0f;

        // Vector body: the loads of one step are all issued before any is used.
        while (k < vb) {
            float acc[V];
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] = 0.0f;
#pragma unroll
            for (int s = 0; s < kMaxMixSources; ++s) {
                if (s < S) {
#pragma unroll
                    for (int j = 0; j < V; ++j) acc[j] += ws[s] * to_float(e[s][j]);
                }
            }
            TO o[V];
#pragma unroll
            for (int j = 0; j < V; ++j) o[j] = Elem<TO>::store(acc[j]);
            store_vec<V>(out_x + k, o);

            k += vstep;
            if (k < vb) {
#pragma unroll
                for (int s = 0; s < kMaxMixSources; ++s)
                    if (s < S) load_vec<V>(static_cast<const TX*>(src.x[s]) + k, e[s]);
            }
        }

        // Ragged ends: [g0, va) and [vb, g1) (everything when not vectorised).
        for (int64_t i = g0 + tid; i < va; i += kMixThreads) {
            float acc = 0.0f;
#pragma unroll
            for (int s = 0; s < kMaxMixSources; ++s)
                if (s < S) acc += ws[s] * to_float(static_cast<const TX*>(src.x[s])[i]);
            out_x[i] = Elem<TO>::store(acc);
        }
        for (int64_t i = vb + tid; i < g1; i += kMixThreads) {
            float acc = 0.0f;
#pragma unroll
            for (int s = 0; s < kMaxMixSources; ++s)
                if (s < S) acc += ws[s] * to_float(static_cast<const TX*>(src.x[s])[i]);
            out_x[i] = Elem<TO>::store(acc);
        }

        if (c == 0) {
            if (tid < S) weights[n * S + tid] = s_w[tid];
            for (int64_t j = tid; j < p.classes; j += kMixThreads) {
                const int64_t i = n * p.classes + j;
                float acc = 0.0f;
#pragma unroll
                for (int s = 0; s < kMaxMixSources; ++s)
                    if (s < S) acc += s_w[s] * src.y[s][i];
                out_y[i] = acc;
            }
        }
        // The next iteration (only when the grid is capped) rewrites the shared weights.
        __syncthreads();
    }
}

template <typename TX, typename TO>
cudaError_t launch_mix(const MixPointers& src, void* out_x, float* out_y, float* weights, const MixParams& p,
                       cudaStream_t stream) {
    const int64_t L = p.sample_numel;
    int64_t chunk = kMaxChunk;
    while (chunk > kMinChunk && p.batch * ((L + chunk - 1) / chunk) < kTargetBlocks) chunk /= 2;
    const int64_t chunks = L > chunk ? (L + chunk - 1) / chunk : 1;  // >= 1: weights and labels

    // Vectors start at multiples of V elements, so 16-byte aligned base pointers suffice (the
    // usual case; a tensor viewed at an odd offset falls back to scalar accesses).
    bool vec = reinterpret_cast<uintptr_t>(out_x) % 16 == 0;
    for (int s = 0; s < p.sources; ++s) vec = vec && reinterpret_cast<uintptr_t>(src.x[s]) % 16 == 0;

    int64_t blocks = p.batch * chunks;
    blocks = blocks < int64_t(INT_MAX) ? blocks : int64_t(INT_MAX);
    const dim3 grid(static_cast<unsigned>(blocks)), block(kMixThreads);
    TO* out = static_cast<TO*>(out_x);
    if (p.sources == 2) {
        mix_kernel<TX, TO, 2><<<grid, block, 0, stream>>>(src, out, out_y, weights, p, chunk, chunks, vec);
    } else {
        mix_kernel<TX, TO, 0><<<grid, block, 0, stream>>>(src, out, out_y, weights, p, chunk, chunks, vec);
    }
    return cudaGetLastError();
}

template <typename TX>
cudaError_t mix_out(const MixPointers& src, void* out_x, DType out_dtype, float* out_y, float* weights,
                    const MixParams& p, cudaStream_t stream) {
    switch (out_dtype) {
        case DType::kF16: return launch_mix<TX, __half>(src, out_x, out_y, weights, p, stream);
        case DType::kBF16: return launch_mix<TX, __nv_bfloat16>(src, out_x, out_y, weights, p, stream);
        case DType::kF32: return launch_mix<TX, float>(src, out_x, out_y, weights, p, stream);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace

cudaError_t sample_dirichlet(const void* alpha, void* out, DType dtype, const DirichletParams& p,
                             cudaStream_t stream) {
    if (p.rows < 0 || p.k < 1 || (dtype != DType::kF32 && dtype != DType::kF64)) return cudaErrorInvalidValue;
    if (p.rows == 0) return cudaSuccess;
    if (alpha == nullptr || out == nullptr) return cudaErrorInvalidValue;
    if (dtype == DType::kF32) return launch_dirichlet<float>(alpha, out, p, stream);
    return launch_dirichlet<double>(alpha, out, p, stream);
}

cudaError_t mix_batch(const MixPointers& src, DType x_dtype, void* out_x, DType out_dtype, float* out_y,
                      float* weights, const MixParams& p, cudaStream_t stream) {
    if (p.sources < 1 || p.sources > kMaxMixSources || p.batch < 0 || p.sample_numel < 0 || p.classes < 0 ||
        !(p.alpha > 0.0)) {
        return cudaErrorInvalidValue;
    }
    if (p.dist != kMixBetaA1 && p.dist != kMixBeta && p.dist != kMixDirichlet) return cudaErrorInvalidValue;
    if (p.dist != kMixDirichlet && p.sources != 2) return cudaErrorInvalidValue;
    if (p.batch == 0) return cudaSuccess;
    if (weights == nullptr || (p.sample_numel > 0 && out_x == nullptr) || (p.classes > 0 && out_y == nullptr)) {
        return cudaErrorInvalidValue;
    }
    for (int s = 0; s < p.sources; ++s) {
        if ((p.sample_numel > 0 && src.x[s] == nullptr) || (p.classes > 0 && src.y[s] == nullptr)) {
            return cudaErrorInvalidValue;
        }
    }
    switch (x_dtype) {
        case DType::kU8: return mix_out<uint8_t>(src, out_x, out_dtype, out_y, weights, p, stream);
        case DType::kF16: return mix_out<__half>(src, out_x, out_dtype, out_y, weights, p, stream);
        case DType::kBF16: return mix_out<__nv_bfloat16>(src, out_x, out_dtype, out_y, weights, p, stream);
        case DType::kF32: return mix_out<float>(src, out_x, out_dtype, out_y, weights, p, stream);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace cuda
}  // namespace genmix
