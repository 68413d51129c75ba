// C launchers of the CUDA kernels. Included by bindings.cpp (host compiler) and by the .cu files.
// Only CUDA runtime headers: `nvcc -c` compiles the kernels without torch.
#pragma once

#include <cuda_runtime.h>

#include "../params.h"

namespace genmix {
namespace cuda {

// Element type of x / y / bias / dy. Filters are float for f16, bf16 and f32, double for f64;
// arithmetic is done in float (double for f64), so half inputs accumulate in fp32.
using genmix::DType;

// Runs upfirdn2d on `stream`. `f` points to filter_h * filter_w floats (doubles for kF64).
// Returns the launch error (cudaSuccess when the kernel was queued).
cudaError_t upfirdn2d(const void* x, const void* f, void* y, DType dtype,
                      const Upfirdn2dParams& p, cudaStream_t stream);

// Runs bias_act on `stream`. `b` may be null when p.channels == 0; `dy` may be null when
// p.grad_order == 0. x, dy and out are dense with p.numel elements in the same storage order.
cudaError_t bias_act(const void* x, const void* b, const void* dy, void* out, DType dtype,
                     const BiasActParams& p, cudaStream_t stream);

// sample_dirichlet (see DirichletParams): alpha and out are rows x k, dtype kF32 or kF64.
cudaError_t sample_dirichlet(const void* alpha, void* out, DType dtype, const DirichletParams& p,
                             cudaStream_t stream);

// mix_batch (see MixParams): sampling the weights and mixing happen in ONE kernel launch.
// x_dtype: kU8, kF16, kBF16, kF32; out_dtype: kF16, kBF16, kF32. out_x is batch x
// sample_numel, out_y batch x classes (float32), weights batch x sources (float32).
cudaError_t mix_batch(const MixPointers& src, DType x_dtype, void* out_x, DType out_dtype,
                      float* out_y, float* weights, const MixParams& p, cudaStream_t stream);

// modulate_weights (see ModulateParams), dtype kF32 or kF64: out (N, O, I, K) and d (N, O).
cudaError_t modulate_weights(const void* w, const void* s, void* out, void* d, DType dtype,
                             const ModulateParams& p, cudaStream_t stream);

// Its backward: g (N, O, I, K) and d -> gw (O, I, K), gs (N, I). `workspace` holds N * O
// values of dtype for gq.
cudaError_t modulate_weights_backward(const void* w, const void* s, const void* d, const void* g,
                                      void* gw, void* gs, void* workspace, DType dtype,
                                      const ModulateParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace genmix
