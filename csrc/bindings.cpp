// genmix._C: the one torch extension. It defines the genmix operators (torch.ops.genmix.*),
// validates tensors, allocates outputs, fills the plain parameter structs and hands raw pointers
// to the CPU or CUDA kernels. The kernels themselves know nothing of torch.

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "params.h"

#ifdef GENMIX_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/launchers.h"
#endif

namespace {

using genmix::BiasActParams;
using genmix::Upfirdn2dParams;

bool is_channels_last(const torch::Tensor& x) {
    return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

#ifdef GENMIX_WITH_CUDA
genmix::DType cuda_dtype(const torch::Tensor& x) {
    switch (x.scalar_type()) {
        case at::kHalf: return genmix::DType::kF16;
        case at::kBFloat16: return genmix::DType::kBF16;
        case at::kFloat: return genmix::DType::kF32;
        case at::kDouble: return genmix::DType::kF64;
        default: TORCH_CHECK_TYPE(false, "genmix: unsupported CUDA dtype ", x.scalar_type());
    }
}

void check_cuda(cudaError_t err, const char* op) {
    TORCH_CHECK(err == cudaSuccess, "genmix.", op, ": CUDA kernel launch failed: ",
                cudaGetErrorString(err));
}
#endif

void check_cpu_dtype(const torch::Tensor& x, const char* op) {
    TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "genmix.",
                     op, ": the CPU kernel takes float32 or float64 tensors, got ", x.scalar_type());
}

torch::Tensor upfirdn2d(const torch::Tensor& x, const torch::Tensor& f, int64_t up_x, int64_t up_y,
                        int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1,
                        int64_t pad_y0, int64_t pad_y1, bool flip_filter, double gain) {
    TORCH_CHECK_VALUE(x.dim() == 4, "genmix.upfirdn2d: x must be 4-D (N, C, H, W), got ", x.sizes());
    TORCH_CHECK_VALUE(f.dim() == 2, "genmix.upfirdn2d: f must be 2-D, got ", f.sizes());
    TORCH_CHECK_VALUE(f.device() == x.device(), "genmix.upfirdn2d: f is on ", f.device(),
                      " but x is on ", x.device());
    TORCH_CHECK_VALUE(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1,
                      "genmix.upfirdn2d: up and down must be >= 1");
    const auto filter_dtype = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    const auto filter = f.to(filter_dtype).contiguous();

    Upfirdn2dParams p;
    p.batch = x.size(0);
    p.channels = x.size(1);
    p.in_h = x.size(2);
    p.in_w = x.size(3);
    p.filter_h = static_cast<int>(filter.size(0));
    p.filter_w = static_cast<int>(filter.size(1));
    p.up_x = static_cast<int>(up_x);
    p.up_y = static_cast<int>(up_y);
    p.down_x = static_cast<int>(down_x);
    p.down_y = static_cast<int>(down_y);
    p.pad_x0 = static_cast<int>(pad_x0);
    p.pad_y0 = static_cast<int>(pad_y0);
    p.out_h = (p.in_h * up_y + pad_y0 + pad_y1 - p.filter_h) / down_y + 1;
    p.out_w = (p.in_w * up_x + pad_x0 + pad_x1 - p.filter_w) / down_x + 1;
    TORCH_CHECK_VALUE(p.out_h >= 1 && p.out_w >= 1, "genmix.upfirdn2d: output would be empty");
    p.flip_filter = flip_filter;
    p.gain = gain;

    auto y = torch::empty({p.batch, p.channels, p.out_h, p.out_w}, x.options(),
                          is_channels_last(x) ? at::MemoryFormat::ChannelsLast
                                              : at::MemoryFormat::Contiguous);
    for (int d = 0; d < 4; ++d) {
        p.in_stride[d] = x.stride(d);
        p.out_stride[d] = y.stride(d);
    }
    if (y.numel() == 0) return y;

    if (x.is_cuda()) {
#ifdef GENMIX_WITH_CUDA
        const c10::cuda::CUDAGuard guard(x.device());
        check_cuda(genmix::cuda::upfirdn2d(x.data_ptr(), filter.data_ptr(), y.data_ptr(),
                                           cuda_dtype(x), p, c10::cuda::getCurrentCUDAStream()),
                   "upfirdn2d");
        return y;
#else
        TORCH_CHECK(false, "genmix._C was built without CUDA kernels");
#endif
    }
    TORCH_CHECK_VALUE(x.is_cpu(), "genmix.upfirdn2d: unsupported device ", x.device());
    check_cpu_dtype(x, "upfirdn2d");
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genmix_upfirdn2d_cpu", [&] {
        genmix::cpu::upfirdn2d<scalar_t>(x.data_ptr<scalar_t>(), filter.data_ptr<scalar_t>(),
                                         y.data_ptr<scalar_t>(), p);
    });
    return y;
}

torch::Tensor bias_act(const torch::Tensor& x, const c10::optional<torch::Tensor>& b,
                       const c10::optional<torch::Tensor>& dy, int64_t act, double alpha,
                       double gain, double clamp, int64_t grad_order, int64_t dim) {
    TORCH_CHECK_VALUE(x.dim() >= 1, "genmix.bias_act: x must have at least one dimension");
    TORCH_CHECK_VALUE(dim >= 0 && dim < x.dim(), "genmix.bias_act: dim out of range");
    TORCH_CHECK_VALUE(act >= genmix::kActLinear && act <= genmix::kActSwish,
                      "genmix.bias_act: unknown activation code ", act);
    TORCH_CHECK_VALUE(grad_order >= 0 && grad_order <= 2, "genmix.bias_act: grad_order must be 0, 1 or 2");
    TORCH_CHECK_VALUE(x.is_non_overlapping_and_dense(),
                      "genmix.bias_act: x must be dense (contiguous in some dimension order)");

    BiasActParams p;
    p.numel = x.numel();
    p.channel_stride = std::max<int64_t>(x.stride(dim), 1);  // a size-1 dim may have stride 0
    p.act = static_cast<int>(act);
    p.grad_order = static_cast<int>(grad_order);
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;

    const void* b_ptr = nullptr;
    torch::Tensor bias;
    if (b.has_value() && b->defined()) {
        bias = b->contiguous();
        TORCH_CHECK_VALUE(bias.dim() == 1 && bias.size(0) == x.size(dim),
                          "genmix.bias_act: b must be 1-D with x.shape[dim] elements");
        TORCH_CHECK_TYPE(bias.scalar_type() == x.scalar_type(), "genmix.bias_act: b dtype ",
                         bias.scalar_type(), " differs from x dtype ", x.scalar_type());
        TORCH_CHECK_VALUE(bias.device() == x.device(), "genmix.bias_act: b is on another device");
        p.channels = bias.size(0);
        b_ptr = bias.data_ptr();
    }
    torch::Tensor grad;
    if (grad_order > 0) {
        TORCH_CHECK_VALUE(dy.has_value() && dy->defined(), "genmix.bias_act: dy is required for gradients");
        grad = *dy;
        TORCH_CHECK_VALUE(grad.sizes() == x.sizes() && grad.strides() == x.strides(),
                          "genmix.bias_act: dy must have the shape and strides of x");
        TORCH_CHECK_TYPE(grad.scalar_type() == x.scalar_type(), "genmix.bias_act: dy dtype differs from x");
        TORCH_CHECK_VALUE(grad.device() == x.device(), "genmix.bias_act: dy is on another device");
    }
    auto out = torch::empty_like(x);  // dense x: empty_like keeps its strides
    if (p.numel == 0) return out;

    if (x.is_cuda()) {
#ifdef GENMIX_WITH_CUDA
        const c10::cuda::CUDAGuard guard(x.device());
        check_cuda(genmix::cuda::bias_act(x.data_ptr(), b_ptr,
                                          grad.defined() ? grad.data_ptr() : nullptr,
                                          out.data_ptr(), cuda_dtype(x), p,
                                          c10::cuda::getCurrentCUDAStream()),
                   "bias_act");
        return out;
#else
        TORCH_CHECK(false, "genmix._C was built without CUDA kernels");
#endif
    }
    TORCH_CHECK_VALUE(x.is_cpu(), "genmix.bias_act: unsupported device ", x.device());
    check_cpu_dtype(x, "bias_act");
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genmix_bias_act_cpu", [&] {
        genmix::cpu::bias_act<scalar_t>(
            x.data_ptr<scalar_t>(), static_cast<const scalar_t*>(b_ptr),
            grad.defined() ? grad.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), p);
    });
    return out;
}

torch::Tensor sample_dirichlet(const torch::Tensor& alpha, uint64_t seed) {
    TORCH_CHECK_VALUE(alpha.dim() == 2, "genmix.sample_dirichlet: concentration must be 2-D (rows, K)");
    TORCH_CHECK_TYPE(alpha.scalar_type() == at::kFloat || alpha.scalar_type() == at::kDouble,
                     "genmix.sample_dirichlet: concentration must be float32 or float64");
    const auto conc = alpha.contiguous();
    auto out = torch::empty_like(conc);
    genmix::DirichletParams p;
    p.rows = conc.size(0);
    p.k = conc.size(1);
    p.seed = seed;
    if (out.numel() == 0) return out;
    if (conc.is_cuda()) {
#ifdef GENMIX_WITH_CUDA
        const c10::cuda::CUDAGuard guard(conc.device());
        check_cuda(genmix::cuda::sample_dirichlet(conc.data_ptr(), out.data_ptr(), cuda_dtype(conc), p,
                                                  c10::cuda::getCurrentCUDAStream()),
                   "sample_dirichlet");
        return out;
#else
        TORCH_CHECK(false, "genmix._C was built without CUDA kernels");
#endif
    }
    TORCH_CHECK_VALUE(conc.is_cpu(), "genmix.sample_dirichlet: unsupported device ", conc.device());
    AT_DISPATCH_FLOATING_TYPES(conc.scalar_type(), "genmix_sample_dirichlet_cpu", [&] {
        genmix::cpu::sample_dirichlet<scalar_t>(conc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), p);
    });
    return out;
}

genmix::DType kernel_dtype(at::ScalarType t, const char* what) {
    switch (t) {
        case at::kHalf: return genmix::DType::kF16;
        case at::kBFloat16: return genmix::DType::kBF16;
        case at::kFloat: return genmix::DType::kF32;
        case at::kDouble: return genmix::DType::kF64;
        case at::kByte: return genmix::DType::kU8;
        default: TORCH_CHECK_TYPE(false, "genmix.mix_batch: unsupported ", what, " dtype ", t);
    }
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> mix_batch(
        const std::vector<torch::Tensor>& xs, const std::vector<torch::Tensor>& ys, int64_t out_code,
        int64_t dist, double alpha, double scale, uint64_t seed) {
    const auto sources = static_cast<int64_t>(xs.size());
    TORCH_CHECK_VALUE(sources >= 1 && sources <= genmix::kMaxMixSources && ys.size() == xs.size(),
                      "genmix.mix_batch: 1 to ", genmix::kMaxMixSources, " sources with one label tensor each");
    TORCH_CHECK_VALUE(dist >= genmix::kMixBetaA1 && dist <= genmix::kMixDirichlet, "genmix.mix_batch: unknown dist");
    TORCH_CHECK_VALUE((dist == genmix::kMixDirichlet) || sources == 2, "genmix.mix_batch: beta mixing takes 2 sources");
    TORCH_CHECK_VALUE(alpha > 0, "genmix.mix_batch: alpha must be > 0");
    TORCH_CHECK_VALUE(out_code >= 0 && out_code <= 3, "genmix.mix_batch: unknown output dtype code");
    const auto& x0 = xs[0];
    const auto& y0 = ys[0];
    TORCH_CHECK_VALUE(x0.dim() == 2 && y0.dim() == 2, "genmix.mix_batch: images (n, m) and labels (n, k)");
    genmix::MixPointers src;
    for (int64_t s = 0; s < sources; ++s) {
        TORCH_CHECK_VALUE(xs[s].sizes() == x0.sizes() && xs[s].is_contiguous() &&
                              xs[s].scalar_type() == x0.scalar_type() && xs[s].device() == x0.device(),
                          "genmix.mix_batch: image sources must be contiguous, of one shape, dtype and device");
        TORCH_CHECK_VALUE(ys[s].sizes() == y0.sizes() && ys[s].is_contiguous() &&
                              ys[s].scalar_type() == at::kFloat && ys[s].device() == x0.device() &&
                              ys[s].size(0) == x0.size(0),
                          "genmix.mix_batch: label sources must be contiguous float32 (n, k) on the images' device");
        src.x[s] = xs[s].data_ptr();
        src.y[s] = ys[s].data_ptr<float>();
    }
    const genmix::DType out_dtype = static_cast<genmix::DType>(out_code);
    const at::ScalarType out_scalar = out_code == 0 ? at::kHalf : out_code == 1 ? at::kBFloat16
                                    : out_code == 2 ? at::kFloat : at::kDouble;
    auto out_x = torch::empty(x0.sizes(), x0.options().dtype(out_scalar));
    auto out_y = torch::empty(y0.sizes(), y0.options());
    auto weights = torch::empty({x0.size(0), sources}, y0.options());
    genmix::MixParams p;
    p.batch = x0.size(0);
    p.sample_numel = x0.size(1);
    p.classes = y0.size(1);
    p.sources = static_cast<int>(sources);
    p.dist = static_cast<int>(dist);
    p.alpha = alpha;
    p.scale = scale;
    p.seed = seed;
    if (p.batch == 0) return {out_x, out_y, weights};
    const genmix::DType x_dtype = kernel_dtype(x0.scalar_type(), "image");
    if (x0.is_cuda()) {
#ifdef GENMIX_WITH_CUDA
        const c10::cuda::CUDAGuard guard(x0.device());
        check_cuda(genmix::cuda::mix_batch(src, x_dtype, out_x.data_ptr(), out_dtype, out_y.data_ptr<float>(),
                                           weights.data_ptr<float>(), p, c10::cuda::getCurrentCUDAStream()),
                   "mix_batch");
        return {out_x, out_y, weights};
#else
        TORCH_CHECK(false, "genmix._C was built without CUDA kernels");
#endif
    }
    TORCH_CHECK_VALUE(x0.is_cpu(), "genmix.mix_batch: unsupported device ", x0.device());
    TORCH_CHECK_TYPE(x_dtype == genmix::DType::kU8 || x_dtype == genmix::DType::kF32 || x_dtype == genmix::DType::kF64,
                     "genmix.mix_batch: the CPU kernel takes uint8, float32 or float64 images");
    genmix::cpu::mix_batch(src, x_dtype, out_x.data_ptr(), out_dtype, out_y.data_ptr<float>(),
                           weights.data_ptr<float>(), p);
    return {out_x, out_y, weights};
}

genmix::ModulateParams modulate_params(const torch::Tensor& w, const torch::Tensor& s, bool demodulate,
                                       double eps) {
    TORCH_CHECK_VALUE(w.dim() == 3 && s.dim() == 2 && s.size(1) == w.size(1),
                      "genmix.modulate_weights: weight (O, I, K) and styles (N, I)");
    TORCH_CHECK_TYPE(w.scalar_type() == s.scalar_type() &&
                         (w.scalar_type() == at::kFloat || w.scalar_type() == at::kDouble),
                     "genmix.modulate_weights: weight and styles must both be float32 or float64");
    TORCH_CHECK_VALUE(w.device() == s.device() && w.is_contiguous() && s.is_contiguous(),
                      "genmix.modulate_weights: contiguous weight and styles on one device");
    genmix::ModulateParams p;
    p.batch = s.size(0);
    p.out_channels = w.size(0);
    p.in_channels = w.size(1);
    p.taps = w.size(2);
    p.demodulate = demodulate;
    p.eps = eps;
    return p;
}

std::tuple<torch::Tensor, torch::Tensor> modulate_weights(const torch::Tensor& w, const torch::Tensor& s,
                                                          bool demodulate, double eps) {
    const auto p = modulate_params(w, s, demodulate, eps);
    auto out = torch::empty({p.batch, p.out_channels, p.in_channels, p.taps}, w.options());
    auto d = torch::empty({p.batch, p.out_channels}, w.options());
    if (out.numel() == 0) return {out, d.fill_(1)};
    if (w.is_cuda()) {
#ifdef GENMIX_WITH_CUDA
        const c10::cuda::CUDAGuard guard(w.device());
        check_cuda(genmix::cuda::modulate_weights(w.data_ptr(), s.data_ptr(), out.data_ptr(), d.data_ptr(),
                                                  cuda_dtype(w), p, c10::cuda::getCurrentCUDAStream()),
                   "modulate_weights");
        return {out, d};
#else
        TORCH_CHECK(false, "genmix._C was built without CUDA kernels");
#endif
    }
    TORCH_CHECK_VALUE(w.is_cpu(), "genmix.modulate_weights: unsupported device ", w.device());
    AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "genmix_modulate_cpu", [&] {
        genmix::cpu::modulate_weights<scalar_t>(w.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                                                out.data_ptr<scalar_t>(), d.data_ptr<scalar_t>(), p);
    });
    return {out, d};
}

std::tuple<torch::Tensor, torch::Tensor> modulate_weights_backward(const torch::Tensor& w, const torch::Tensor& s,
                                                                   const torch::Tensor& d, const torch::Tensor& g,
                                                                   bool demodulate, double eps) {
    const auto p = modulate_params(w, s, demodulate, eps);
    TORCH_CHECK_VALUE(g.is_contiguous() && g.dim() == 4 && g.size(0) == p.batch && g.size(1) == p.out_channels &&
                          g.size(2) == p.in_channels && g.size(3) == p.taps && g.scalar_type() == w.scalar_type(),
                      "genmix.modulate_weights_backward: g must be contiguous (N, O, I, K) of the weight dtype");
    TORCH_CHECK_VALUE(d.is_contiguous() && d.numel() == p.batch * p.out_channels && d.scalar_type() == w.scalar_type(),
                      "genmix.modulate_weights_backward: d must be contiguous (N, O)");
    auto gw = torch::zeros_like(w);
    auto gs = torch::zeros_like(s);
    if (g.numel() == 0) return {gw, gs};
    if (w.is_cuda()) {
#ifdef GENMIX_WITH_CUDA
        const c10::cuda::CUDAGuard guard(w.device());
        auto workspace = torch::empty({p.batch, p.out_channels}, w.options());
        check_cuda(genmix::cuda::modulate_weights_backward(w.data_ptr(), s.data_ptr(), d.data_ptr(), g.data_ptr(),
                                                           gw.data_ptr(), gs.data_ptr(), workspace.data_ptr(),
                                                           cuda_dtype(w), p, c10::cuda::getCurrentCUDAStream()),
                   "modulate_weights_backward");
        return {gw, gs};
#else
        TORCH_CHECK(false, "genmix._C was built without CUDA kernels");
#endif
    }
    TORCH_CHECK_VALUE(w.is_cpu(), "genmix.modulate_weights_backward: unsupported device ", w.device());
    AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "genmix_modulate_backward_cpu", [&] {
        genmix::cpu::modulate_weights_backward<scalar_t>(w.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                                                         d.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                                                         gw.data_ptr<scalar_t>(), gs.data_ptr<scalar_t>(), p);
    });
    return {gw, gs};
}

// ------------------------------------------------------------------ modconv epilogue (CPU)

struct EpilogueInputs {
    genmix::EpilogueParams p;
    torch::Tensor d, noise, b;
};

EpilogueInputs epilogue_inputs(const torch::Tensor& y, const c10::optional<torch::Tensor>& d,
                               const c10::optional<torch::Tensor>& noise,
                               const c10::optional<torch::Tensor>& b, int64_t act, double alpha,
                               double gain, double clamp) {
    TORCH_CHECK_VALUE(y.dim() == 4, "genmix.modconv_epilogue: y must be 4-D (N, C, H, W), got ", y.sizes());
    TORCH_CHECK_VALUE(y.is_cpu(), "genmix.modconv_epilogue: the fused epilogue runs on CPU tensors");
    check_cpu_dtype(y, "modconv_epilogue");
    TORCH_CHECK_VALUE(act >= genmix::kActLinear && act <= genmix::kActSwish,
                      "genmix.modconv_epilogue: unknown activation code ", act);
    EpilogueInputs in;
    auto& p = in.p;
    p.batch = y.size(0);
    p.channels = y.size(1);
    p.height = y.size(2);
    p.width = y.size(3);
    // With one channel (or one pixel) both layouts are the same memory; call it planar.
    const bool planar = y.is_contiguous();
    p.channels_last = !planar;
    TORCH_CHECK_VALUE(planar || y.is_contiguous(at::MemoryFormat::ChannelsLast),
                      "genmix.modconv_epilogue: y must be contiguous NCHW or channels_last");
    p.act = static_cast<int>(act);
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    auto same = [&](const torch::Tensor& t, const char* name) {
        TORCH_CHECK_TYPE(t.scalar_type() == y.scalar_type(), "genmix.modconv_epilogue: ", name,
                         " dtype ", t.scalar_type(), " differs from y's ", y.scalar_type());
        TORCH_CHECK_VALUE(t.device() == y.device(), "genmix.modconv_epilogue: ", name, " is on another device");
    };
    if (d.has_value() && d->defined()) {
        in.d = d->contiguous();
        same(in.d, "d");
        TORCH_CHECK_VALUE(in.d.numel() == p.batch * p.channels, "genmix.modconv_epilogue: d must be (N, C)");
    }
    if (b.has_value() && b->defined()) {
        in.b = b->contiguous();
        same(in.b, "b");
        TORCH_CHECK_VALUE(in.b.dim() == 1 && in.b.size(0) == p.channels, "genmix.modconv_epilogue: b must be (C,)");
    }
    if (noise.has_value() && noise->defined()) {
        in.noise = *noise;
        same(in.noise, "noise");
        const auto& nz = in.noise;
        TORCH_CHECK_VALUE(nz.dim() == 4 && nz.size(1) == 1 &&
                              (nz.size(0) == 1 || nz.size(0) == p.batch) &&
                              (nz.size(2) == 1 || nz.size(2) == p.height) &&
                              (nz.size(3) == 1 || nz.size(3) == p.width),
                          "genmix.modconv_epilogue: noise must be (N or 1, 1, H or 1, W or 1), got ", nz.sizes());
        const int dims[3] = {0, 2, 3};
        for (int k = 0; k < 3; ++k)
            p.noise_stride[k] = nz.size(dims[k]) == 1 ? 0 : nz.stride(dims[k]);
    }
    return in;
}

torch::Tensor modconv_epilogue(const torch::Tensor& y, const c10::optional<torch::Tensor>& d,
                               const c10::optional<torch::Tensor>& noise,
                               const c10::optional<torch::Tensor>& b, int64_t act, double alpha,
                               double gain, double clamp) {
    const auto in = epilogue_inputs(y, d, noise, b, act, alpha, gain, clamp);
    auto out = torch::empty_like(y, in.p.channels_last ? at::MemoryFormat::ChannelsLast
                                                       : at::MemoryFormat::Contiguous);
    if (out.numel() == 0) return out;
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "genmix_modconv_epilogue_cpu", [&] {
        auto ptr = [](const torch::Tensor& t) {
            return t.defined() ? t.data_ptr<scalar_t>() : static_cast<scalar_t*>(nullptr);
        };
        genmix::cpu::modconv_epilogue<scalar_t>(y.data_ptr<scalar_t>(), ptr(in.d), ptr(in.noise),
                                                ptr(in.b), out.data_ptr<scalar_t>(), in.p);
    });
    return out;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> modconv_epilogue_backward(
        const torch::Tensor& y, const c10::optional<torch::Tensor>& d,
        const c10::optional<torch::Tensor>& noise, const c10::optional<torch::Tensor>& b,
        const torch::Tensor& g, int64_t act, double alpha, double gain, double clamp, bool need_y,
        bool need_d, bool need_noise, bool need_b) {
    const auto in = epilogue_inputs(y, d, noise, b, act, alpha, gain, clamp);
    const auto& p = in.p;
    TORCH_CHECK_VALUE(g.sizes() == y.sizes() && g.strides() == y.strides() &&
                          g.scalar_type() == y.scalar_type() && g.device() == y.device(),
                      "genmix.modconv_epilogue_backward: g must have the shape, strides and dtype of y");
    torch::Tensor gy, gd, gnoise, gb;
    if (need_y) gy = torch::empty_like(y, p.channels_last ? at::MemoryFormat::ChannelsLast
                                                          : at::MemoryFormat::Contiguous);
    if (need_d && in.d.defined()) gd = torch::empty({p.batch, p.channels}, y.options());
    if (need_noise && in.noise.defined()) gnoise = torch::empty({p.batch, 1, p.height, p.width}, y.options());
    if (need_b && in.b.defined()) gb = torch::empty({p.channels}, y.options());
    if (y.numel() == 0) {
        for (auto* t : {&gd, &gnoise, &gb})
            if (t->defined()) t->zero_();
        return {gy, gd, gnoise, gb};
    }
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "genmix_modconv_epilogue_backward_cpu", [&] {
        auto ptr = [](const torch::Tensor& t) {
            return t.defined() ? t.data_ptr<scalar_t>() : static_cast<scalar_t*>(nullptr);
        };
        genmix::cpu::modconv_epilogue_backward<scalar_t>(
            y.data_ptr<scalar_t>(), ptr(in.d), ptr(in.noise), ptr(in.b), g.data_ptr<scalar_t>(),
            ptr(gy), ptr(gd), ptr(gnoise), ptr(gb), p);
    });
    return {gy, gd, gnoise, gb};
}

std::string cpu_isa() { return genmix::cpu::cpu_isa_name(genmix::cpu::cpu_isa()); }

// Lowers (or restores) the instruction set of the CPU kernels compiled per target; returns the
// one in use, which is never above what the CPU supports.
std::string set_cpu_isa(const std::string& name) {
    genmix::cpu::CpuIsa isa;
    if (name == "baseline") {
        isa = genmix::cpu::kIsaBaseline;
    } else if (name == "avx2") {
        isa = genmix::cpu::kIsaAvx2;
    } else if (name == "avx512" || name == "best") {
        isa = genmix::cpu::kIsaAvx512;
    } else {
        TORCH_CHECK_VALUE(false, "genmix.set_cpu_isa: unknown instruction set '", name,
                          "' (baseline, avx2, avx512 or best)");
    }
    return genmix::cpu::cpu_isa_name(genmix::cpu::set_cpu_isa(isa));
}

bool has_cuda() {
#ifdef GENMIX_WITH_CUDA
    return true;
#else
    return false;
#endif
}

pybind11::dict build_info() {
    pybind11::dict info;
    info["cuda"] = has_cuda();
#ifdef GENMIX_CUDA_VERSION
    info["cuda_version"] = std::string(GENMIX_CUDA_VERSION);
#endif
#ifdef _OPENMP
    info["openmp"] = _OPENMP;
#else
    info["openmp"] = pybind11::none();
#endif
    info["torch"] = std::string(TORCH_VERSION);
    info["cpu_isa"] = cpu_isa();
    info["cpu_isa_supported"] = std::string(genmix::cpu::cpu_isa_name(genmix::cpu::cpu_isa_supported()));
    return info;
}


// ------------------------------------------------------------------ operator registration
//
// Every kernel is a torch.library operator in the `genmix` namespace: a schema here, the same
// function registered for the CPU and (when built) CUDA dispatch keys, since each one picks its
// kernel from the tensors' device. Autograd and the fake (shape-only) implementations are
// registered once, in Python (genmix/ops/_library.py): the backward formulas are compositions of
// these same operators, so no torch autograd internals are compiled here, and torch.compile,
// fake tensors and torch.library.opcheck see ordinary operators.

// Kernels walk flat storage: any tensor with gaps or overlaps is compacted first.
torch::Tensor dense(const torch::Tensor& t) { return t.is_non_overlapping_and_dense() ? t : t.contiguous(); }

// `t` with exactly the strides of dense `ref`, so that both share flat indices.
torch::Tensor like(const torch::Tensor& t, const torch::Tensor& ref) {
    if (t.strides() == ref.strides()) return t;
    auto out = torch::empty_strided(ref.sizes(), ref.strides(), ref.options());
    out.copy_(t);
    return out;
}

torch::Tensor upfirdn2d_op(const torch::Tensor& x, const torch::Tensor& f, at::IntArrayRef params,
                           bool flip_filter, double gain) {
    TORCH_CHECK_VALUE(params.size() == 8, "genmix.upfirdn2d: 8 resampling parameters expected "
                      "(up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1), got ", params.size());
    return upfirdn2d(x, f, params[0], params[1], params[2], params[3], params[4], params[5], params[6],
                     params[7], flip_filter, gain);
}

torch::Tensor bias_act_op(const torch::Tensor& x, const c10::optional<torch::Tensor>& b, int64_t act,
                          double alpha, double gain, double clamp, int64_t dim) {
    return bias_act(dense(x), b, c10::nullopt, act, alpha, gain, clamp, 0, dim);
}

// dx = dy * gain * act'(x + b): the first derivative, an operator of its own so that autograd
// can differentiate it once more (the R1 penalty).
torch::Tensor bias_act_grad_op(const torch::Tensor& dy, const torch::Tensor& x,
                               const c10::optional<torch::Tensor>& b, int64_t act, double alpha,
                               double gain, double clamp, int64_t dim) {
    const auto xd = dense(x);
    return bias_act(xd, b, like(dy, xd), act, alpha, gain, clamp, 1, dim);
}

// ddx * dy * gain * act''(x + b): the second derivative's x term.
torch::Tensor bias_act_grad2_op(const torch::Tensor& ddx_dy, const torch::Tensor& x,
                                const c10::optional<torch::Tensor>& b, int64_t act, double alpha,
                                double gain, double clamp, int64_t dim) {
    const auto xd = dense(x);
    return bias_act(xd, b, like(ddx_dy, xd), act, alpha, gain, clamp, 2, dim);
}

torch::Tensor sample_dirichlet_op(const torch::Tensor& alpha, int64_t seed) {
    return sample_dirichlet(alpha, static_cast<uint64_t>(seed));
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> mix_batch_op(
        at::TensorList xs, at::TensorList ys, int64_t out_code, int64_t dist, double alpha, double scale,
        int64_t seed) {
    return mix_batch(xs.vec(), ys.vec(), out_code, dist, alpha, scale, static_cast<uint64_t>(seed));
}

// Gradients the caller did not ask for come back empty (0 elements) rather than undefined, so
// that every output of the operator is a tensor.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> modconv_epilogue_backward_op(
        const torch::Tensor& y, const c10::optional<torch::Tensor>& d, const c10::optional<torch::Tensor>& noise,
        const c10::optional<torch::Tensor>& b, const torch::Tensor& g, int64_t act, double alpha, double gain,
        double clamp, bool need_y, bool need_d, bool need_noise, bool need_b) {
    auto res = modconv_epilogue_backward(y, d, noise, b, like(g, y), act, alpha, gain, clamp, need_y, need_d,
                                         need_noise, need_b);
    auto filled = [&](torch::Tensor t) { return t.defined() ? t : torch::empty({0}, y.options()); };
    return {filled(std::get<0>(res)), filled(std::get<1>(res)), filled(std::get<2>(res)), filled(std::get<3>(res))};
}

// bias_act(x @ (weight * weight_gain)^T, bias * bias_gain, dim=1): StyleGAN2's equalized-lr dense
// layer. Returns the pre-activation v too: the backward needs it, and as an output it is saved
// instead of recomputed.
std::tuple<torch::Tensor, torch::Tensor> fully_connected_op(
        const torch::Tensor& x, const torch::Tensor& weight, const c10::optional<torch::Tensor>& bias,
        double weight_gain, double bias_gain, int64_t act, double alpha, double gain, double clamp) {
    TORCH_CHECK_VALUE(x.dim() == 2 && weight.dim() == 2 && weight.size(1) == x.size(1),
                      "genmix.fully_connected: x (N, I) and weight (O, I), got ", x.sizes(), " and ", weight.sizes());
    // No aten::to / contiguous that could hand back an input: an operator below autograd must
    // not alias its inputs (torch.library.opcheck checks every call it makes).
    auto scaled = [&](const torch::Tensor& t, double gain) {
        return t.scalar_type() == x.scalar_type() ? t * gain : t.to(x.scalar_type()) * gain;
    };
    const auto w = scaled(weight, weight_gain);
    c10::optional<torch::Tensor> b;
    if (bias.has_value() && bias->defined()) b = scaled(*bias, bias_gain);
    auto v = torch::mm(x, w.t());
    if (!v.is_contiguous()) v = v.contiguous();
    auto out = bias_act(v, b, c10::nullopt, act, alpha, gain, clamp, 0, 1);
    return {out, v};
}

}  // namespace

TORCH_LIBRARY(genmix, m) {
    m.def("upfirdn2d(Tensor x, Tensor f, int[] params, bool flip_filter, float gain) -> Tensor");
    m.def("bias_act(Tensor x, Tensor? b, int act, float alpha, float gain, float clamp, int dim) -> Tensor");
    m.def("bias_act_grad(Tensor dy, Tensor x, Tensor? b, int act, float alpha, float gain, float clamp, "
          "int dim) -> Tensor");
    m.def("bias_act_grad2(Tensor ddx_dy, Tensor x, Tensor? b, int act, float alpha, float gain, float clamp, "
          "int dim) -> Tensor");
    m.def("sample_dirichlet(Tensor concentration, int seed) -> Tensor");
    m.def("mix_batch(Tensor[] xs, Tensor[] ys, int out_dtype, int dist, float alpha, float scale, int seed) "
          "-> (Tensor, Tensor, Tensor)");
    m.def("modulate_weights(Tensor weight, Tensor styles, bool demodulate, float eps) -> (Tensor, Tensor)");
    m.def("modulate_weights_backward(Tensor weight, Tensor styles, Tensor d, Tensor g, bool demodulate, "
          "float eps) -> (Tensor, Tensor)");
    m.def("modconv_epilogue(Tensor y, Tensor? d, Tensor? noise, Tensor? b, int act, float alpha, float gain, "
          "float clamp) -> Tensor");
    m.def("modconv_epilogue_backward(Tensor y, Tensor? d, Tensor? noise, Tensor? b, Tensor g, int act, "
          "float alpha, float gain, float clamp, bool need_y, bool need_d, bool need_noise, bool need_b) "
          "-> (Tensor, Tensor, Tensor, Tensor)");
    m.def("fully_connected(Tensor x, Tensor weight, Tensor? bias, float weight_gain, float bias_gain, int act, "
          "float alpha, float gain, float clamp) -> (Tensor, Tensor)");
}

// The same functions serve CPU and CUDA: each picks its kernel from the tensors' device.
#define GENMIX_REGISTER_KERNELS(m)                                        \
    m.impl("upfirdn2d", &upfirdn2d_op);                                   \
    m.impl("bias_act", &bias_act_op);                                     \
    m.impl("bias_act_grad", &bias_act_grad_op);                           \
    m.impl("bias_act_grad2", &bias_act_grad2_op);                         \
    m.impl("sample_dirichlet", &sample_dirichlet_op);                     \
    m.impl("mix_batch", &mix_batch_op);                                   \
    m.impl("modulate_weights", &modulate_weights);                        \
    m.impl("modulate_weights_backward", &modulate_weights_backward);      \
    m.impl("fully_connected", &fully_connected_op)

TORCH_LIBRARY_IMPL(genmix, CPU, m) {
    GENMIX_REGISTER_KERNELS(m);
    // The fused epilogue has a CPU kernel only.
    m.impl("modconv_epilogue", &modconv_epilogue);
    m.impl("modconv_epilogue_backward", &modconv_epilogue_backward_op);
}

#ifdef GENMIX_WITH_CUDA
TORCH_LIBRARY_IMPL(genmix, CUDA, m) { GENMIX_REGISTER_KERNELS(m); }
#endif

// Not operators: what was built, and the CPU instruction-set switch the tests use.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "genmix compiled kernels (CPU, and CUDA when built with it); the operators are torch.ops.genmix.*";
    m.def("cpu_isa", &cpu_isa, "instruction set the per-target CPU kernels use (baseline, avx2, avx512)");
    m.def("set_cpu_isa", &set_cpu_isa,
          "use a lower instruction set for the per-target CPU kernels (tests); returns the one in use",
          pybind11::arg("name"));
    m.def("has_cuda", &has_cuda, "whether the CUDA kernels were compiled in");
    m.def("build_info", &build_info, "how this extension was built");
}
