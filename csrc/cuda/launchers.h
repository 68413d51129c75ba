// C launchers of the CUDA kernels. Included by bindings.cpp (host compiler) and by the .cu files.
// Only CUDA runtime headers: `nvcc -c` compiles the kernels without torch.
#pragma once

#include <cuda_runtime.h>

#include "../params.h"

namespace genmix {
namespace cuda {

// Element type of x / y / bias / dy. Filters are float for f16, bf16 and f32, double for f64;
// arithmetic is done in float (double for f64), so half inputs accumulate in fp32.
enum class DType : int { kF16 = 0, kBF16 = 1, kF32 = 2, kF64 = 3 };

// Runs upfirdn2d on `stream`. `f` points to filter_h * filter_w floats (doubles for kF64).
// Returns the launch error (cudaSuccess when the kernel was queued).
cudaError_t upfirdn2d(const void* x, const void* f, void* y, DType dtype,
                      const Upfirdn2dParams& p, cudaStream_t stream);

// Runs bias_act on `stream`. `b` may be null when p.channels == 0; `dy` may be null when
// p.grad_order == 0. x, dy and out are dense with p.numel elements in the same storage order.
cudaError_t bias_act(const void* x, const void* b, const void* dy, void* out, DType dtype,
                     const BiasActParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace genmix
