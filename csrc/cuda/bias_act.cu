// bias_act CUDA kernel: bias add, activation (or its first/second derivative), gain and clamp
// in one elementwise pass over dense storage (see BiasActParams for the exact definition).
//
// Memory-bound, so the kernel moves 16-byte vectors when the pointers allow it and keeps the
// per-element channel lookup cheap: for tensors indexable in 32 bits the two divisions of
// c = (i / channel_stride) % channels use precomputed multiply-shift reciprocals.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "elem.cuh"
#include "launchers.h"

namespace genmix {
namespace cuda {
namespace {

constexpr int kThreads = 256;
// Enough blocks to fill any current GPU several times over; the grid-stride loop does the rest.
constexpr int64_t kMaxBlocks = 4096;

constexpr double kSeluScale = 1.0507009873554805;
constexpr double kSeluAlpha = 1.6732632423543772;
// torch's softplus switches to the identity above this input (beta = 1).
constexpr double kSoftplusThreshold = 20.0;

// The activation and its derivatives. Branch points follow torch's autograd exactly, so results
// agree even at the kinks: relu'(0) = 0, lrelu'(0) = alpha, elu'/selu' take the exponential
// branch for v <= 0 but elu''/selu'' only for v < 0, and softplus'' is 0 from v = 20 on while
// softplus and softplus' switch only above 20.
template <typename A>
struct Activation {
    using M = Math<A>;
    int act;
    A alpha;

    __device__ __forceinline__ A sigmoid(A v) const { return A(1) / (A(1) + M::exp(-v)); }

    __device__ __forceinline__ A value(A v) const {
        switch (act) {
            case kActRelu: return v < A(0) ? A(0) : v;  // keeps NaN, like torch
            case kActLrelu: return v > A(0) ? v : v * alpha;
            case kActTanh: return M::tanh(v);
            case kActSigmoid: return sigmoid(v);
            case kActElu: return v > A(0) ? v : alpha * M::expm1(v);
            case kActSelu: return A(kSeluScale) * (v > A(0) ? v : A(kSeluAlpha) * M::expm1(v));
            case kActSoftplus: return v > A(kSoftplusThreshold) ? v : M::log1p(M::exp(v));
            case kActSwish: return sigmoid(v) * v;
            default: return v;
        }
    }

    __device__ __forceinline__ A grad1(A v) const {
        switch (act) {
            case kActRelu: return v > A(0) ? A(1) : A(0);
            case kActLrelu: return v > A(0) ? A(1) : alpha;
            case kActTanh: {
                const A t = M::tanh(v);
                return A(1) - t * t;
            }
            case kActSigmoid: {
                const A s = sigmoid(v);
                return s * (A(1) - s);
            }
            case kActElu: return v > A(0) ? A(1) : alpha * M::exp(v);
            case kActSelu: return v > A(0) ? A(kSeluScale) : A(kSeluScale) * A(kSeluAlpha) * M::exp(v);
            case kActSoftplus: {
                if (v > A(kSoftplusThreshold)) return A(1);
                const A z = M::exp(v);
                return z / (z + A(1));
            }
            case kActSwish: {
                const A s = sigmoid(v);
                return s * (A(1) + v * (A(1) - s));
            }
            default: return A(1);
        }
    }

    __device__ __forceinline__ A grad2(A v) const {
        switch (act) {
            case kActTanh: {
                const A t = M::tanh(v);
                return A(-2) * t * (A(1) - t * t);
            }
            case kActSigmoid: {
                const A s = sigmoid(v);
                return s * (A(1) - s) * (A(1) - A(2) * s);
            }
            case kActElu: return v < A(0) ? alpha * M::exp(v) : A(0);
            case kActSelu: return v < A(0) ? A(kSeluScale) * A(kSeluAlpha) * M::exp(v) : A(0);
            case kActSoftplus: {
                if (v >= A(kSoftplusThreshold)) return A(0);
                const A z = M::exp(v);
                const A s = z / (z + A(1));
                return s * (A(1) - s);
            }
            case kActSwish: {
                const A s = sigmoid(v);
                return s * (A(1) - s) * (A(2) + v * (A(1) - A(2) * s));
            }
            default: return A(0);  // linear, relu and lrelu are piecewise linear
        }
    }
};

template <typename A>
struct Op {
    Activation<A> fn;
    int grad_order;
    A gain, clamp;
    bool use_clamp;

    // v = x + b; d = dy (unused for grad_order 0).
    __device__ __forceinline__ A operator()(A v, A d) const {
        if (grad_order == 0) {
            A y = fn.value(v) * gain;
            if (use_clamp) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);  // NaN passes through
            return y;
        }
        const A g = grad_order == 1 ? fn.grad1(v) : fn.grad2(v);
        A r = d * gain * g;
        // Selected rather than multiplied, so a clamped-away inf/NaN gradient becomes 0.
        if (use_clamp && !(Math<A>::abs(fn.value(v) * gain) <= clamp)) r = A(0);
        return r;
    }
};

// n / d for 32-bit n via a multiply-high and a shift (round-up reciprocal, exact for every n).
struct FastDiv {
    uint32_t d = 1, m = 1;
    int shift = 0;

    FastDiv() = default;
    explicit FastDiv(uint32_t divisor) : d(divisor) {
        while ((uint64_t(1) << shift) < uint64_t(d)) ++shift;
        m = uint32_t(((((uint64_t(1) << shift) - d) << 32) / d) + 1);
    }
    __device__ __forceinline__ uint32_t div(uint32_t n) const {
        return uint32_t((uint64_t(__umulhi(m, n)) + n) >> shift);
    }
};

struct ChannelOf32 {
    FastDiv stride, channels;
    __device__ __forceinline__ int64_t operator()(int64_t i) const {
        const uint32_t q = stride.div(uint32_t(i));
        return int64_t(q - channels.div(q) * channels.d);
    }
};

struct ChannelOf64 {
    int64_t stride, channels;
    __device__ __forceinline__ int64_t operator()(int64_t i) const { return (i / stride) % channels; }
};

// x, dy and out are deliberately not __restrict__: out may alias x or dy. Each element is read
// before it is written by the same thread, so in-place use is safe.
template <typename T, typename ChannelOf>
__global__ void __launch_bounds__(kThreads)
bias_act_kernel(const T* x, const T* b, const T* dy, T* out, const BiasActParams p,
                const ChannelOf channel_of, const int64_t nvec) {
    using A = typename Elem<T>::Acc;
    constexpr int V = int(sizeof(uint4) / sizeof(T));

    Op<A> op;
    op.fn.act = p.act;
    op.fn.alpha = A(p.alpha);
    op.grad_order = p.grad_order;
    op.gain = A(p.gain);
    op.clamp = A(p.clamp);
    op.use_clamp = p.clamp >= 0.0f;
    const bool has_bias = p.channels > 0;
    const bool has_dy = p.grad_order > 0;

    const int64_t first = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    const int64_t step = int64_t(gridDim.x) * kThreads;

    // 16-byte body; nvec is 0 when the pointers are not aligned for it.
    for (int64_t k = first; k < nvec; k += step) {
        const uint4 rx = reinterpret_cast<const uint4*>(x)[k];
        uint4 rd = make_uint4(0u, 0u, 0u, 0u);
        if (has_dy) rd = reinterpret_cast<const uint4*>(dy)[k];
        T xs[V], ds[V], os[V];
        memcpy(xs, &rx, sizeof(rx));
        memcpy(ds, &rd, sizeof(rd));
#pragma unroll
        for (int j = 0; j < V; ++j) {
            A v = Elem<T>::load(xs[j]);
            if (has_bias) v += Elem<T>::load(b[channel_of(k * V + j)]);
            const A d = has_dy ? Elem<T>::load(ds[j]) : A(0);
            os[j] = Elem<T>::store(op(v, d));
        }
        uint4 ro;
        memcpy(&ro, os, sizeof(ro));
        reinterpret_cast<uint4*>(out)[k] = ro;
    }

    // Scalar remainder (everything when unaligned).
    for (int64_t i = nvec * V + first; i < p.numel; i += step) {
        A v = Elem<T>::load(x[i]);
        if (has_bias) v += Elem<T>::load(b[channel_of(i)]);
        const A d = has_dy ? Elem<T>::load(dy[i]) : A(0);
        out[i] = Elem<T>::store(op(v, d));
    }
}

template <typename T, typename ChannelOf>
cudaError_t launch(const void* x, const void* b, const void* dy, void* out, const BiasActParams& p,
                   const ChannelOf& channel_of, cudaStream_t stream) {
    constexpr int64_t V = int64_t(sizeof(uint4) / sizeof(T));
    uintptr_t addr = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(out);
    if (p.grad_order > 0) addr |= reinterpret_cast<uintptr_t>(dy);
    const int64_t nvec = (addr % sizeof(uint4) == 0) ? p.numel / V : 0;
    const int64_t tail = p.numel - nvec * V;
    const int64_t threads = nvec > tail ? nvec : tail;
    int64_t blocks = (threads + kThreads - 1) / kThreads;
    blocks = blocks < kMaxBlocks ? blocks : kMaxBlocks;
    bias_act_kernel<T, ChannelOf><<<dim3(unsigned(blocks)), dim3(kThreads), 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(b), static_cast<const T*>(dy), static_cast<T*>(out),
        p, channel_of, nvec);
    return cudaGetLastError();
}

template <typename T>
cudaError_t run(const void* x, const void* b, const void* dy, void* out, const BiasActParams& p,
                cudaStream_t stream) {
    constexpr int64_t kU32 = int64_t(UINT32_MAX);
    // Without bias the channel is never looked up; any valid divisors will do.
    const int64_t stride = p.channels > 0 ? p.channel_stride : 1;
    const int64_t channels = p.channels > 0 ? p.channels : 1;
    if (p.numel <= kU32 && stride <= kU32 && channels <= kU32) {
        ChannelOf32 c32;
        c32.stride = FastDiv(uint32_t(stride));
        c32.channels = FastDiv(uint32_t(channels));
        return launch<T>(x, b, dy, out, p, c32, stream);
    }
    ChannelOf64 c64;
    c64.stride = stride;
    c64.channels = channels;
    return launch<T>(x, b, dy, out, p, c64, stream);
}

}  // namespace

cudaError_t bias_act(const void* x, const void* b, const void* dy, void* out, DType dtype,
                     const BiasActParams& p, cudaStream_t stream) {
    if (p.grad_order < 0 || p.grad_order > 2 || p.act < kActLinear || p.act > kActSwish || p.numel < 0 ||
        p.channels < 0) {
        return cudaErrorInvalidValue;
    }
    if (p.numel == 0) return cudaSuccess;
    if ((p.channels > 0 && (b == nullptr || p.channel_stride < 1)) || (p.grad_order > 0 && dy == nullptr) ||
        x == nullptr || out == nullptr) {
        return cudaErrorInvalidValue;
    }
    switch (dtype) {
        case DType::kF16: return run<__half>(x, b, dy, out, p, stream);
        case DType::kBF16: return run<__nv_bfloat16>(x, b, dy, out, p, stream);
        case DType::kF32: return run<float>(x, b, dy, out, p, stream);
        case DType::kF64: return run<double>(x, b, dy, out, p, stream);
        case DType::kU8: break;  // activations of integer tensors are not defined
    }
    return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace genmix
