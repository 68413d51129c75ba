// CPU kernels (OpenMP). Raw pointers and the shared parameter structs; no torch.
#pragma once

#include "../params.h"

namespace genmix {
namespace cpu {

// See Upfirdn2dParams for the exact definition. T is float or double; `f` holds
// filter_h * filter_w values of T. x and y are addressed through the strides in `p`.
template <typename T>
void upfirdn2d(const T* x, const T* f, T* y, const Upfirdn2dParams& p);

// See BiasActParams. T is float or double. `b` may be null when p.channels == 0, `dy` may be
// null when p.grad_order == 0. out may alias x (in-place) or dy.
template <typename T>
void bias_act(const T* x, const T* b, const T* dy, T* out, const BiasActParams& p);

// See EpilogueParams. d, noise and b may be null (ones / zeros).
template <typename T>
void modconv_epilogue(const T* y, const T* d, const T* noise, const T* b, T* out,
                      const EpilogueParams& p);

// Backward of modconv_epilogue; every output pointer may be null when that gradient is not
// wanted (gd and gb are then not reduced at all).
template <typename T>
void modconv_epilogue_backward(const T* y, const T* d, const T* noise, const T* b, const T* g,
                               T* gy, T* gd, T* gnoise, T* gb, const EpilogueParams& p);

// See DirichletParams. T is float or double; alpha and out are rows x k, row-major.
template <typename T>
void sample_dirichlet(const T* alpha, T* out, const DirichletParams& p);

// See MixParams. x_dtype: kU8, kF32, kF64; out_dtype: kF16, kBF16, kF32, kF64 (f16/bf16 are
// stored as their IEEE/bfloat16 bit patterns, rounded to nearest even).
void mix_batch(const MixPointers& src, DType x_dtype, void* out_x, DType out_dtype, float* out_y,
               float* weights, const MixParams& p);

// See ModulateParams. T is float or double. Forward writes out (N, O, I, K) and d (N, O).
template <typename T>
void modulate_weights(const T* w, const T* s, T* out, T* d, const ModulateParams& p);

// Backward: g (N, O, I, K), d from the forward -> gw (O, I, K) and gs (N, I).
template <typename T>
void modulate_weights_backward(const T* w, const T* s, const T* d, const T* g, T* gw, T* gs,
                               const ModulateParams& p);

}  // namespace cpu
}  // namespace genmix
