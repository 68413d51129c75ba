// Element type <-> accumulation type of the CUDA kernels, and their math functions: half and bfloat16 are loaded into
// float and rounded back on store, so reductions accumulate in fp32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace genmix {
namespace cuda {

template <typename T>
struct Elem;
template <>
struct Elem<float> {
    using Acc = float;
    static __device__ __forceinline__ float load(float v) { return v; }
    static __device__ __forceinline__ float store(float v) { return v; }
};
template <>
struct Elem<double> {
    using Acc = double;
    static __device__ __forceinline__ double load(double v) { return v; }
    static __device__ __forceinline__ double store(double v) { return v; }
};
template <>
struct Elem<__half> {
    using Acc = float;
    static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Elem<__nv_bfloat16> {
    using Acc = float;
    static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

// Precise (not intrinsic) math in the accumulation type, and arithmetic rounded one operation at
// a time (never contracted into FMAs) for formulas that must match the CPU bit for bit.
template <typename A>
struct Math;
template <>
struct Math<float> {
    static __device__ __forceinline__ float exp(float v) { return ::expf(v); }
    static __device__ __forceinline__ float expm1(float v) { return ::expm1f(v); }
    static __device__ __forceinline__ float log(float v) { return ::logf(v); }
    static __device__ __forceinline__ float log1p(float v) { return ::log1pf(v); }
    static __device__ __forceinline__ float tanh(float v) { return ::tanhf(v); }
    static __device__ __forceinline__ float sqrt(float v) { return ::sqrtf(v); }
    static __device__ __forceinline__ float cos(float v) { return ::cosf(v); }
    static __device__ __forceinline__ float abs(float v) { return ::fabsf(v); }
    static __device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
    static __device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
    static __device__ __forceinline__ float sub(float a, float b) { return __fsub_rn(a, b); }
};
template <>
struct Math<double> {
    static __device__ __forceinline__ double exp(double v) { return ::exp(v); }
    static __device__ __forceinline__ double expm1(double v) { return ::expm1(v); }
    static __device__ __forceinline__ double log(double v) { return ::log(v); }
    static __device__ __forceinline__ double log1p(double v) { return ::log1p(v); }
    static __device__ __forceinline__ double tanh(double v) { return ::tanh(v); }
    static __device__ __forceinline__ double sqrt(double v) { return ::sqrt(v); }
    static __device__ __forceinline__ double cos(double v) { return ::cos(v); }
    static __device__ __forceinline__ double abs(double v) { return ::fabs(v); }
    static __device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
    static __device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }
    static __device__ __forceinline__ double sub(double a, double b) { return __dsub_rn(a, b); }
};

}  // namespace cuda
}  // namespace genmix
