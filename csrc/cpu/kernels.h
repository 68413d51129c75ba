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

}  // namespace cpu
}  // namespace genmix
