// Modulated convolution weights on the GPU (see ModulateParams for the exact definition).
//
// Forward, three small launches:
//   1. wsq[o, i] = sum_k w^2, stored in the first O * I elements of `out` (the interface has no
//      workspace, and out holds N * O * I * K >= O * I values whenever it is non-empty; kernel 3
//      overwrites it after kernel 2 has consumed it, in stream order),
//   2. d[n, o] = 1 / sqrt(sum_i s^2 wsq + eps): one warp per (n, o), I terms instead of I * K,
//   3. out = w s d: one block per (n, o) row, consecutive threads on consecutive elements.
// Backward, g (the big array) is read once per kernel, always along its contiguous rows:
//   1. gq[n, o] from gd = sum_{i,k} g w s: one block per (n, o) row (only when demodulating),
//   2. gw: one thread per (o, i, k) looping over n; a warp reads 32 consecutive elements of g,
//   3. gs: a block per (n, 32 consecutive i) whose rows of threads split o; sum_k w^2 for the gq
//      term is recomputed from the w values the loop loads anyway, so no wsq buffer is needed.
// Arithmetic in the input type (float or double); results do not depend on scheduling.

#include <cuda_runtime.h>

#include <cstdint>

#include "launchers.h"

namespace genmix {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
// Grid-stride loops cover the rest; this many blocks already fill any current GPU.
constexpr int64_t kMaxBlocks = 65535;
// gs kernel: 32 consecutive input channels per block, kGsRows warps splitting o.
constexpr int kGsRows = 16;

int64_t blocks_for(int64_t work, int64_t per_block) {
    const int64_t b = (work + per_block - 1) / per_block;
    return b < kMaxBlocks ? (b < 1 ? 1 : b) : kMaxBlocks;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); the result is valid in
// thread 0. `scratch` holds 32 values; the call ends with a barrier, so it can be reused.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < int(blockDim.x / kWarp) ? scratch[lane] : T(0);
        v = warp_sum(v);
    }
    __syncthreads();
    return v;
}

// Walks j = threadIdx.x, threadIdx.x + blockDim.x, ... over a row of I * K elements while
// tracking i = j / K without a division per element.
struct RowCursor {
    int64_t j, i, k, step_i, step_k;
    __device__ RowCursor(int64_t K) {
        j = threadIdx.x;
        i = j / K;
        k = j - i * K;
        step_i = int64_t(blockDim.x) / K;
        step_k = int64_t(blockDim.x) - step_i * K;
    }
    __device__ __forceinline__ void next(int64_t K) {
        j += blockDim.x;
        i += step_i;
        k += step_k;
        if (k >= K) {
            k -= K;
            ++i;
        }
    }
};

// ------------------------------------------------------------------------------- forward

template <typename T>
__global__ void __launch_bounds__(kThreads)
wsq_kernel(const T* __restrict__ w, T* __restrict__ wsq, const int64_t OI, const int64_t K) {
    for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < OI; e += int64_t(gridDim.x) * kThreads) {
        const T* wr = w + e * K;
        T acc = T(0);
        for (int64_t k = 0; k < K; ++k) acc += wr[k] * wr[k];
        wsq[e] = acc;
    }
}

// One warp per (n, o); consecutive warps share n, so the row of s stays in cache.
template <typename T>
__global__ void __launch_bounds__(kThreads)
demod_kernel(const T* __restrict__ s, const T* __restrict__ wsq, T* __restrict__ d, const int64_t N,
             const int64_t O, const int64_t I, const bool demodulate, const T eps) {
    const int lane = threadIdx.x % kWarp;
    const int64_t warps = int64_t(gridDim.x) * (kThreads / kWarp);
    for (int64_t r = int64_t(blockIdx.x) * (kThreads / kWarp) + threadIdx.x / kWarp; r < N * O; r += warps) {
        if (!demodulate) {
            if (lane == 0) d[r] = T(1);
            continue;
        }
        const int64_t n = r / O, o = r - n * O;
        const T* sn = s + n * I;
        const T* wq = wsq + o * I;
        T acc = T(0);
        for (int64_t i = lane; i < I; i += kWarp) acc += sn[i] * sn[i] * wq[i];
        acc = warp_sum(acc);
        if (lane == 0) d[r] = T(1) / sqrt(acc + eps);
    }
}

// One block per (n, o) row of out.
template <typename T>
__global__ void __launch_bounds__(kThreads)
modulate_kernel(const T* __restrict__ w, const T* __restrict__ s, const T* __restrict__ d, T* __restrict__ out,
                const int64_t N, const int64_t O, const int64_t I, const int64_t K) {
    const int64_t IK = I * K;
    for (int64_t r = blockIdx.x; r < N * O; r += gridDim.x) {
        const int64_t n = r / O, o = r - n * O;
        const T dr = d[r];
        const T* wr = w + o * IK;
        const T* sn = s + n * I;
        T* orow = out + r * IK;
        for (RowCursor c(K); c.j < IK; c.next(K)) orow[c.j] = wr[c.j] * sn[c.i] * dr;
    }
}

// ------------------------------------------------------------------------------ backward

// gq[n, o] = -0.5 d^3 sum_{i,k} g w s; one block per (n, o) row of g.
template <typename T>
__global__ void __launch_bounds__(kThreads)
gq_kernel(const T* __restrict__ w, const T* __restrict__ s, const T* __restrict__ d, const T* __restrict__ g,
          T* __restrict__ gq, const int64_t N, const int64_t O, const int64_t I, const int64_t K) {
    __shared__ T scratch[kWarp];
    const int64_t IK = I * K;
    for (int64_t r = blockIdx.x; r < N * O; r += gridDim.x) {
        const int64_t n = r / O, o = r - n * O;
        const T* wr = w + o * IK;
        const T* sn = s + n * I;
        const T* gr = g + r * IK;
        T acc = T(0);
        for (RowCursor c(K); c.j < IK; c.next(K)) acc += gr[c.j] * wr[c.j] * sn[c.i];
        acc = block_sum(acc, scratch);
        if (threadIdx.x == 0) {
            const T dr = d[r];
            gq[r] = T(-0.5) * dr * dr * dr * acc;
        }
    }
}

// gw[o, i, k] = sum_n g s d + 2 w sum_n gq s^2; one thread per (o, i, k).
template <typename T>
__global__ void __launch_bounds__(kThreads)
gw_kernel(const T* __restrict__ w, const T* __restrict__ s, const T* __restrict__ d, const T* __restrict__ g,
          const T* __restrict__ gq, T* __restrict__ gw, const int64_t N, const int64_t O, const int64_t I,
          const int64_t K, const bool demodulate) {
    const int64_t IK = I * K, OIK = O * IK;
    for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < OIK; e += int64_t(gridDim.x) * kThreads) {
        const int64_t o = e / IK, i = (e - o * IK) / K;
        T a = T(0), b = T(0);
        for (int64_t n = 0; n < N; ++n) {
            const T sv = s[n * I + i];
            a += g[n * OIK + e] * sv * d[n * O + o];
            if (demodulate) b += gq[n * O + o] * sv * sv;
        }
        gw[e] = demodulate ? a + T(2) * w[e] * b : a;
    }
}

// gs[n, i] = sum_o d sum_k g w + 2 s sum_o gq sum_k w^2. Block (32, kGsRows): threadIdx.x picks
// one of 32 consecutive i (a warp reads 32 * K consecutive values of g per o), threadIdx.y
// strides over o; the rows are combined in shared memory.
template <typename T>
__global__ void __launch_bounds__(kWarp * kGsRows)
gs_kernel(const T* __restrict__ w, const T* __restrict__ s, const T* __restrict__ d, const T* __restrict__ g,
          const T* __restrict__ gq, T* __restrict__ gs, const int64_t N, const int64_t O, const int64_t I,
          const int64_t K, const bool demodulate) {
    __shared__ T part_a[kGsRows][kWarp];
    __shared__ T part_b[kGsRows][kWarp];
    const int64_t chunks = (I + kWarp - 1) / kWarp;
    const int tx = threadIdx.x, ty = threadIdx.y;
    for (int64_t blk = blockIdx.x; blk < N * chunks; blk += gridDim.x) {
        const int64_t n = blk / chunks;
        const int64_t i = (blk - n * chunks) * kWarp + tx;
        T a = T(0), b = T(0);
        if (i < I) {
            for (int64_t o = ty; o < O; o += kGsRows) {
                const T* gp = g + ((n * O + o) * I + i) * K;
                const T* wp = w + (o * I + i) * K;
                T gw_sum = T(0), ww_sum = T(0);
                for (int64_t k = 0; k < K; ++k) {
                    const T wv = wp[k];
                    gw_sum += gp[k] * wv;
                    ww_sum += wv * wv;
                }
                a += d[n * O + o] * gw_sum;
                if (demodulate) b += gq[n * O + o] * ww_sum;
            }
        }
        part_a[ty][tx] = a;
        part_b[ty][tx] = b;
        __syncthreads();
        if (ty == 0 && i < I) {
            for (int y = 1; y < kGsRows; ++y) {
                a += part_a[y][tx];
                b += part_b[y][tx];
            }
            gs[n * I + i] = demodulate ? a + T(2) * s[n * I + i] * b : a;
        }
        __syncthreads();  // part_* are reused by the next iteration
    }
}

// ------------------------------------------------------------------------------ launchers

bool valid(const ModulateParams& p) {
    return p.batch >= 0 && p.out_channels >= 0 && p.in_channels >= 0 && p.taps >= 0;
}

template <typename T>
cudaError_t forward(const T* w, const T* s, T* out, T* d, const ModulateParams& p, cudaStream_t stream) {
    const int64_t N = p.batch, O = p.out_channels, I = p.in_channels, K = p.taps;
    const int64_t NO = N * O, IK = I * K;
    // With an empty out (I * K == 0) every sum of squares is 0: the d kernel then reads no wsq.
    const int64_t I_eff = IK > 0 ? I : 0;
    T* wsq = out;
    if (p.demodulate && IK > 0) {
        wsq_kernel<T><<<unsigned(blocks_for(O * I, kThreads)), kThreads, 0, stream>>>(w, wsq, O * I, K);
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return err;
    }
    demod_kernel<T><<<unsigned(blocks_for(NO, kThreads / kWarp)), kThreads, 0, stream>>>(
        s, wsq, d, N, O, I_eff, p.demodulate, T(p.eps));
    if (IK > 0) {
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return err;
        modulate_kernel<T><<<unsigned(blocks_for(NO, 1)), kThreads, 0, stream>>>(w, s, d, out, N, O, I, K);
    }
    return cudaGetLastError();
}

template <typename T>
cudaError_t backward(const T* w, const T* s, const T* d, const T* g, T* gw, T* gs, T* gq, const ModulateParams& p,
                     cudaStream_t stream) {
    const int64_t N = p.batch, O = p.out_channels, I = p.in_channels, K = p.taps;
    // Without taps every gd, hence every gq, is 0: the gq terms drop out (and no row is walked).
    const bool demod = p.demodulate && I * K > 0;
    if (demod && N * O > 0) {
        gq_kernel<T><<<unsigned(blocks_for(N * O, 1)), kThreads, 0, stream>>>(w, s, d, g, gq, N, O, I, K);
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return err;
    }
    if (O * I * K > 0) {
        gw_kernel<T><<<unsigned(blocks_for(O * I * K, kThreads)), kThreads, 0, stream>>>(w, s, d, g, gq, gw, N, O,
                                                                                        I, K, demod);
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return err;
    }
    if (N * I > 0) {
        const int64_t chunks = (I + kWarp - 1) / kWarp;
        gs_kernel<T><<<unsigned(blocks_for(N * chunks, 1)), dim3(kWarp, kGsRows), 0, stream>>>(w, s, d, g, gq, gs,
                                                                                               N, O, I, K, demod);
    }
    return cudaGetLastError();
}

}  // namespace

cudaError_t modulate_weights(const void* w, const void* s, void* out, void* d, DType dtype,
                             const ModulateParams& p, cudaStream_t stream) {
    if (!valid(p)) return cudaErrorInvalidValue;
    // Nothing to write without a d: out is empty too.
    if (p.batch == 0 || p.out_channels == 0) return cudaSuccess;
    const bool has_out = p.in_channels > 0 && p.taps > 0;
    if (d == nullptr || (has_out && (w == nullptr || s == nullptr || out == nullptr))) {
        return cudaErrorInvalidValue;
    }
    switch (dtype) {
        case DType::kF32:
            return forward<float>(static_cast<const float*>(w), static_cast<const float*>(s),
                                  static_cast<float*>(out), static_cast<float*>(d), p, stream);
        case DType::kF64:
            return forward<double>(static_cast<const double*>(w), static_cast<const double*>(s),
                                   static_cast<double*>(out), static_cast<double*>(d), p, stream);
        default: break;
    }
    return cudaErrorInvalidValue;
}

cudaError_t modulate_weights_backward(const void* w, const void* s, const void* d, const void* g,
                                      void* gw, void* gs, void* workspace, DType dtype,
                                      const ModulateParams& p, cudaStream_t stream) {
    if (!valid(p)) return cudaErrorInvalidValue;
    const int64_t N = p.batch, O = p.out_channels, I = p.in_channels, K = p.taps;
    const bool has_gw = O * I * K > 0, has_gs = N * I > 0;
    if (!has_gw && !has_gs) return cudaSuccess;
    const bool has_g = N * O * I * K > 0;
    if ((has_gw && (gw == nullptr || w == nullptr)) || (has_gs && (gs == nullptr || s == nullptr)) ||
        (N * O > 0 && d == nullptr) || (has_g && (g == nullptr || w == nullptr || s == nullptr)) ||
        (p.demodulate && N * O > 0 && workspace == nullptr)) {
        return cudaErrorInvalidValue;
    }
    switch (dtype) {
        case DType::kF32:
            return backward<float>(static_cast<const float*>(w), static_cast<const float*>(s),
                                   static_cast<const float*>(d), static_cast<const float*>(g), static_cast<float*>(gw),
                                   static_cast<float*>(gs), static_cast<float*>(workspace), p, stream);
        case DType::kF64:
            return backward<double>(static_cast<const double*>(w), static_cast<const double*>(s),
                                    static_cast<const double*>(d), static_cast<const double*>(g),
                                    static_cast<double*>(gw), static_cast<double*>(gs),
                                    static_cast<double*>(workspace), p, stream);
        default: break;
    }
    return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace genmix
