// Plain parameter structs shared by the CPU kernels, the CUDA kernels and the bindings.
// No torch, no CUDA: every translation unit (g++ or nvcc) can include this.
#pragma once

#include <cstdint>

namespace genmix {

// upfirdn2d: y = downsample(FIR(pad(upsample(x)))), on one 2-D filter.
//
// Output element (n, c, oy, ox) is
//   gain * sum_{ky, kx} w[ky][kx] * xup(oy * down_y + ky - pad_y0, ox * down_x + kx - pad_x0)
// where xup(qy, qx) = x(qy / up_y, qx / up_x) when qy % up_y == 0 and qx % up_x == 0 and the
// source pixel lies inside the input, else 0; and w is the filter as a correlation kernel:
//   w[ky][kx] = flip_filter ? f[ky][kx] : f[filter_h - 1 - ky][filter_w - 1 - kx].
// The right/bottom padding is implied by out_h/out_w:
//   out = (in * up + pad0 + pad1 - filter) / down + 1.
// Strides are in elements, for the dimensions (N, C, H, W), so contiguous, channels_last and
// other strided layouts are all addressed directly. The filter is contiguous (filter_h, filter_w).
struct Upfirdn2dParams {
    int64_t batch = 0, channels = 0;
    int64_t in_h = 0, in_w = 0;
    int64_t out_h = 0, out_w = 0;
    int64_t in_stride[4] = {0, 0, 0, 0};
    int64_t out_stride[4] = {0, 0, 0, 0};
    int up_x = 1, up_y = 1;
    int down_x = 1, down_y = 1;
    int pad_x0 = 0, pad_y0 = 0;
    int filter_h = 1, filter_w = 1;
    bool flip_filter = false;
    double gain = 1.0;  // double so float64 results are exact; kernels narrow it for fp32 math
};

// Activation codes; the order is part of the ABI between Python, bindings and kernels.
enum BiasActKind : int {
    kActLinear = 0,
    kActRelu = 1,
    kActLrelu = 2,
    kActTanh = 3,
    kActSigmoid = 4,
    kActElu = 5,
    kActSelu = 6,
    kActSoftplus = 7,
    kActSwish = 8,
};

// bias_act on a dense tensor (contiguous in some dimension order). With v = x[i] + b[c]:
//   grad_order 0: out = clamp(act(v) * gain, -clamp, clamp)             (dy unused)
//   grad_order 1: out = dy[i] * gain * act'(v)  * inside(v)
//   grad_order 2: out = dy[i] * gain * act''(v) * inside(v)
// where inside(v) = |act(v) * gain| <= clamp (always true when clamp < 0), and the channel of
// storage index i is c = (i / channel_stride) % channels. channels == 0 means no bias.
// alpha: negative slope of lrelu, alpha of elu. selu uses its fixed constants.
// softplus follows torch: v for v > 20, and derivative 1 there.
struct BiasActParams {
    int64_t numel = 0;
    int64_t channels = 0;
    int64_t channel_stride = 1;
    int act = kActLinear;
    int grad_order = 0;
    double alpha = 0.0;
    double gain = 1.0;  // double so float64 results are exact; kernels narrow it for fp32 math
    double clamp = -1.0;
};

}  // namespace genmix
