// Plain parameter structs shared by the CPU kernels, the CUDA kernels and the bindings.
// No torch, no CUDA: every translation unit (g++ or nvcc) can include this.
#pragma once

#include <cstdint>

namespace genmix {

// Element types crossing the kernel ABI (the numbering is part of it).
enum class DType : int { kF16 = 0, kBF16 = 1, kF32 = 2, kF64 = 3, kU8 = 4 };

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

// modconv_epilogue: the pointwise tail of a StyleGAN2 synthesis layer on the convolution output
// y (N, C, H, W), in one pass:
//   v   = y[n,c,h,w] * d[n,c] + noise[n,h,w] + b[c]     (d = 1, noise = 0, b = 0 when absent)
//   out = clamp(act(v) * gain, -clamp, clamp)           (bias_act's grad_order 0 on v)
// Backward, given g = dL/dout, with gv = g * gain * act'(v) * inside(v) (bias_act's grad_order 1):
//   gy = gv * d,   gd[n,c] = sum_{h,w} gv * y,   gnoise[n,h,w] = sum_c gv,   gb[c] = sum_{n,h,w} gv
// y, out, g and gy share one dense layout: contiguous NCHW, or NHWC when channels_last. noise is
// read at n * noise_stride[0] + h * noise_stride[1] + w * noise_stride[2] (0 broadcasts); d
// (N, C), b (C) and gnoise (N, H, W) are contiguous.
struct EpilogueParams {
    int64_t batch = 0, channels = 0, height = 0, width = 0;
    bool channels_last = false;
    int64_t noise_stride[3] = {0, 0, 0};
    int act = kActLinear;
    double alpha = 0.0;
    double gain = 1.0;
    double clamp = -1.0;  // < 0: no clamp
};

// ---------------------------------------------------------------- random sampling and mixing
//
// Counter-based randomness, identical in every backend, so a seed gives the same numbers on
// every run and (up to float rounding) on every backend:
//
// * Philox4x32-10 with key (seed_lo, seed_hi) = the two 32-bit halves of `seed`, multipliers
//   0xD2511F53 / 0xCD9E8D57, Weyl constants 0x9E3779B9 / 0xBB67AE85.
// * A stream is identified by (tag, id): its j-th block of four uint32 is
//   philox(counter = (j, tag, id_lo, id_hi), key). A stream yields those uint32 in order
//   (block 0 words 0..3, block 1 words 0..3, ...).
// * uniform(u32) = ((u32 >> 8) + 0.5) * 2^-24, computed in the accumulation type (float, or
//   double for float64): never 0, and below 1 except that float rounds the top values to
//   exactly 1 (harmless: log(1) = 0).
// * normal: z = sqrt(-2 log u1) * cos(2 pi u2) from the next two uniforms (the sine half is
//   discarded).
// * log_gamma_sample(a), a log-domain Gamma(a, 1) sample (Marsaglia-Tsang):
//     boost = a < 1; b = boost ? a + 1 : a; d = b - 1/3; c = 1 / sqrt(9 d)
//     repeat up to 64 times: z = normal(); v = 1 + c z; if v <= 0: continue; v = v^3;
//                            u = uniform(); if log(u) < 0.5 z^2 + d - d v + d log(v): accept
//     result = log(d) + log(v) on acceptance (log(d) if all 64 tries were rejected)
//     if boost: result += log(uniform()) / a      (the uniform drawn after the loop)
//   Log-domain because with a < 1 the plain sample underflows to 0 in float32.
// * dirichlet(alpha[0..K-1]) on one stream: g_k = log_gamma_sample(alpha_k) for k = 0..K-1 in
//   order, then softmax(g) (subtract the max before exp, so the row sums to 1 and never NaNs).
// * beta(a, b) = dirichlet({a, b})[0]; beta(a, 1) is instead sampled exactly as
//   exp(log(uniform()) / a) (one uniform, no loop).

enum RandomTag : uint32_t {
    kTagDirichlet = 0,  // sample_dirichlet: stream id = row index
    kTagMix = 1,        // mix_batch: stream id = sample index
};

// sample_dirichlet: `rows` rows of K concentrations (row-major, contiguous) -> rows of K
// probabilities. Row r uses stream (kTagDirichlet, r).
struct DirichletParams {
    int64_t rows = 0;
    int64_t k = 0;
    uint64_t seed = 0;
};

enum MixDist : int {
    kMixBetaA1 = 0,     // lambda ~ Beta(alpha, 1): GenMix
    kMixBeta = 1,       // lambda ~ Beta(alpha, alpha): classic mixup
    kMixDirichlet = 2,  // (w_0..w_{S-1}) ~ Dirichlet(alpha, ..., alpha) over S sources
};

constexpr int kMaxMixSources = 8;

// mix_batch: S sources of `batch` samples each; sample n of every source is `sample_numel`
// contiguous image elements (at n * sample_numel) and `classes` label floats (at n * classes).
// Sample n draws its weights from stream (kTagMix, n):
//   beta_a1 / beta (S == 2): w_0 = lambda, w_1 = 1 - lambda
//   dirichlet:               w = dirichlet({alpha} * S)
// out_x[n, i] = sum_s w_s * scale * x_s[n, i]   (scale = 1/255 for uint8 images, else 1)
// out_y[n, c] = sum_s w_s * y_s[n, c]
// weights[n * S + s] = w_s (float32, always written).
// Labels are float32; images are uint8/f16/bf16/f32(/f64 on CPU); outputs f16/bf16/f32(/f64).
struct MixPointers {
    const void* x[kMaxMixSources] = {};   // images of source s, x_dtype
    const float* y[kMaxMixSources] = {};  // soft labels of source s
};

struct MixParams {
    int64_t batch = 0;
    int64_t sample_numel = 0;
    int64_t classes = 0;
    int sources = 2;
    int dist = kMixBetaA1;
    double alpha = 0.3;
    double scale = 1.0;
    uint64_t seed = 0;
};

// ---------------------------------------------------------------- modulated convolution weights
//
// StyleGAN2's per-sample weights. w is (O, I, K) (K = kh * kw taps), s the styles (N, I):
//   d[n, o]          = demodulate ? 1 / sqrt(sum_{i,k} (w[o,i,k] s[n,i])^2 + eps) : 1
//   out[n, o, i, k]  = w[o, i, k] * s[n, i] * d[n, o]
// Backward, given g = dL/dout (N, O, I, K):
//   gd[n, o]  = sum_{i,k} g[n,o,i,k] w[o,i,k] s[n,i]
//   gq[n, o]  = demodulate ? -0.5 * d[n,o]^3 * gd[n,o] : 0          (dL/d of the sum of squares)
//   gw[o,i,k] = sum_n g[n,o,i,k] s[n,i] d[n,o] + 2 w[o,i,k] sum_n gq[n,o] s[n,i]^2
//   gs[n, i]  = sum_{o,k} g[n,o,i,k] w[o,i,k] d[n,o] + 2 s[n,i] sum_o gq[n,o] sum_k w[o,i,k]^2
// All arrays are contiguous row-major; arithmetic in float (double for float64).
struct ModulateParams {
    int64_t batch = 0;         // N
    int64_t out_channels = 0;  // O
    int64_t in_channels = 0;   // I
    int64_t taps = 0;          // K
    bool demodulate = true;
    double eps = 1e-8;
};

}  // namespace genmix
