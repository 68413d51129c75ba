// genmix._C: the one torch/pybind11 module. It validates tensors, allocates outputs, fills the
// plain parameter structs and hands raw pointers to the CPU or CUDA kernels. The kernels
// themselves know nothing of torch.

#include <torch/csrc/autograd/functions/basic_ops.h>
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

// ------------------------------------------------------------------ autograd nodes in C++
//
// The C++ backend's ops as torch::autograd::Function nodes, so that neither their forward
// bookkeeping nor their backward runs Python: StyleGAN2's layers are small on a CPU, and a
// Python-implemented backward node costs more than the kernel it calls. Each node mirrors the
// Python autograd.Function of the same op (genmix/ops/*.py), which the other backends use.
// Absent tensors (no bias, no noise) are empty optionals: autograd gives them no edge, so the
// edge of tensor argument k is its rank among the arguments present (Inputs below).

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = c10::optional<torch::Tensor>;

torch::Tensor value_or_undefined(const OptTensor& t) {
    return t.has_value() && t->defined() ? *t : torch::Tensor();
}

OptTensor opt(const torch::Tensor& t) { return t.defined() ? OptTensor(t) : c10::nullopt; }

// Which tensor arguments of a node were present, to map them to autograd edges.
struct Inputs {
    static void save(AutogradContext* ctx, std::initializer_list<bool> present) {
        std::vector<int64_t> flags;
        for (bool p : present) flags.push_back(p ? 1 : 0);
        ctx->saved_data["present"] = flags;
    }
    // Whether tensor argument k was given and its gradient is wanted.
    static bool needs(AutogradContext* ctx, size_t k) {
        const auto flags = ctx->saved_data["present"].toIntVector();
        if (!flags[k]) return false;
        size_t edge = 0;
        for (size_t i = 0; i < k; ++i) edge += flags[i] ? 1 : 0;
        return ctx->needs_input_grad(edge);
    }
};

// Kernels walk flat storage: any tensor with gaps or overlaps is compacted first.
torch::Tensor dense(const torch::Tensor& t) { return t.is_non_overlapping_and_dense() ? t : t.contiguous(); }

// `t` with exactly the strides of dense `ref`, so that both share flat indices.
torch::Tensor like(const torch::Tensor& t, const torch::Tensor& ref) {
    if (t.strides() == ref.strides()) return t;
    auto out = torch::empty_strided(ref.sizes(), ref.strides(), ref.options());
    out.copy_(t);
    return out;
}

torch::Tensor sum_to_bias(const torch::Tensor& t, int64_t dim) {
    std::vector<int64_t> dims;
    for (int64_t i = 0; i < t.dim(); ++i)
        if (i != dim) dims.push_back(i);
    return t.sum(dims);
}

void save_act(AutogradContext* ctx, int64_t act, double alpha, double gain, double clamp, int64_t dim) {
    ctx->saved_data["act"] = act;
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["gain"] = gain;
    ctx->saved_data["clamp"] = clamp;
    ctx->saved_data["dim"] = dim;
}

struct ActArgs {
    int64_t act, dim;
    double alpha, gain, clamp;
};

ActArgs load_act(AutogradContext* ctx) {
    return {ctx->saved_data["act"].toInt(), ctx->saved_data["dim"].toInt(), ctx->saved_data["alpha"].toDouble(),
            ctx->saved_data["gain"].toDouble(), ctx->saved_data["clamp"].toDouble()};
}

// dx = dy * gain * act'(x + b): the first derivative of bias_act as a node of its own, so that
// the R1 penalty can differentiate it once more. Its own backward is not differentiable.
class BiasActGradFn : public torch::autograd::Function<BiasActGradFn> {
  public:
    static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& dy, const torch::Tensor& x,
                                 const OptTensor& b, int64_t act, double alpha, double gain, double clamp,
                                 int64_t dim) {
        const auto g = like(dy, x);
        ctx->save_for_backward({g, x, value_or_undefined(b)});
        save_act(ctx, act, alpha, gain, clamp, dim);
        Inputs::save(ctx, {true, true, b.has_value()});
        return bias_act(x, b, g, act, alpha, gain, clamp, 1, dim);
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        // Like Python's once_differentiable: with create_graph the results are computed all the
        // same, and only differentiating them once more (a third derivative) raises.
        const bool graph = torch::autograd::GradMode::is_enabled();
        variable_list out;
        {
            torch::NoGradGuard no_grad;
            const auto saved = ctx->get_saved_variables();
            const auto &dy = saved[0], &x = saved[1], &b = saved[2];
            const auto a = load_act(ctx);
            const auto ddx = like(grads[0], x);
            const bool need_dy = Inputs::needs(ctx, 0), need_x = Inputs::needs(ctx, 1), need_b = Inputs::needs(ctx, 2);
            torch::Tensor d_dy, d_x, d_b;
            if (need_dy) d_dy = bias_act(x, opt(b), ddx, a.act, a.alpha, a.gain, a.clamp, 1, a.dim);
            if (need_x || need_b) d_x = bias_act(x, opt(b), like(ddx * dy, x), a.act, a.alpha, a.gain, a.clamp, 2, a.dim);
            if (need_b) d_b = sum_to_bias(d_x, a.dim);
            if (!need_x) d_x = torch::Tensor();
            out = {d_dy, d_x, d_b, {}, {}, {}, {}, {}};
        }
        if (graph) {  // as once_differentiable does: outputs whose backward is an error node
            variable_list fake;
            for (const auto& t : out)
                if (t.defined()) fake.push_back(t.detach().set_requires_grad(true));
            auto err = c10::make_intrusive<torch::autograd::DelayedError>(
                "genmix.bias_act: only the first and second derivatives are implemented",
                static_cast<int64_t>(fake.size()));
            auto wrapped = err->apply(std::move(fake));
            size_t k = 0;
            for (auto& t : out)
                if (t.defined()) t = wrapped[k++];
        }
        return out;
    }
};

class BiasActFn : public torch::autograd::Function<BiasActFn> {
  public:
    static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in, const OptTensor& b_in,
                                 int64_t act, double alpha, double gain, double clamp, int64_t dim) {
        const auto x = dense(x_in);
        const auto b = b_in.has_value() ? OptTensor(b_in->contiguous()) : c10::nullopt;
        ctx->save_for_backward({x, value_or_undefined(b)});
        save_act(ctx, act, alpha, gain, clamp, dim);
        Inputs::save(ctx, {true, b.has_value()});
        return bias_act(x, b, c10::nullopt, act, alpha, gain, clamp, 0, dim);
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const auto &x = saved[0], &b = saved[1];
        const auto a = load_act(ctx);
        auto dx = BiasActGradFn::apply(grads[0], x, opt(b), a.act, a.alpha, a.gain, a.clamp, a.dim);
        torch::Tensor db;
        if (Inputs::needs(ctx, 1)) db = sum_to_bias(dx, a.dim);
        if (!Inputs::needs(ctx, 0)) dx = torch::Tensor();
        return {dx, db, {}, {}, {}, {}, {}};
    }
};

torch::Tensor bias_act_autograd(const torch::Tensor& x, const OptTensor& b, int64_t act, double alpha,
                                double gain, double clamp, int64_t dim) {
    return BiasActFn::apply(x, opt(value_or_undefined(b)), act, alpha, gain, clamp, dim);
}

// upfirdn2d on one 2-D filter. Its adjoint is upfirdn2d again (up and down swapped, the filter
// flipped, adjusted padding), so the backward is this node once more: any order.
class Upfirdn2dFn : public torch::autograd::Function<Upfirdn2dFn> {
  public:
    static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& f,
                                 std::vector<int64_t> params, bool flip_filter, double gain) {
        TORCH_CHECK_VALUE(params.size() == 8, "genmix.upfirdn2d: 8 resampling parameters expected");
        auto y = upfirdn2d(x, f, params[0], params[1], params[2], params[3], params[4], params[5], params[6],
                           params[7], flip_filter, gain);
        ctx->save_for_backward({f});
        ctx->saved_data["params"] = params;
        ctx->saved_data["flip"] = flip_filter;
        ctx->saved_data["gain"] = gain;
        ctx->saved_data["shape"] = std::vector<int64_t>{x.size(2), x.size(3), y.size(2), y.size(3)};
        return y;
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        if (!ctx->needs_input_grad(0)) return {{}, {}, {}, {}, {}};
        const auto f = ctx->get_saved_variables()[0];
        const auto p = ctx->saved_data["params"].toIntVector();
        const auto shape = ctx->saved_data["shape"].toIntVector();
        const bool flip = ctx->saved_data["flip"].toBool();
        const double gain = ctx->saved_data["gain"].toDouble();
        const int64_t upx = p[0], upy = p[1], downx = p[2], downy = p[3], px0 = p[4], py0 = p[6];
        const int64_t fh = f.size(0), fw = f.size(1);
        const int64_t in_h = shape[0], in_w = shape[1], out_h = shape[2], out_w = shape[3];
        std::vector<int64_t> back = {downx, downy, upx, upy,
                                     fw - px0 - 1, in_w * upx - out_w * downx + px0 - upx + 1,
                                     fh - py0 - 1, in_h * upy - out_h * downy + py0 - upy + 1};
        auto dx = Upfirdn2dFn::apply(grads[0], f, back, !flip, gain);
        return {dx, {}, {}, {}, {}};
    }
};

torch::Tensor upfirdn2d_autograd(const torch::Tensor& x, const torch::Tensor& f, std::vector<int64_t> params,
                                 bool flip_filter, double gain) {
    return Upfirdn2dFn::apply(x, f, std::move(params), flip_filter, gain);
}

// Gradients of `out` with respect to the wanted ones of `inputs`, as a differentiable graph
// (create_graph): the second-derivative path of the fused nodes below.
variable_list grads_with_graph(const torch::Tensor& out, const torch::Tensor& grad_out,
                               const variable_list& inputs, const std::vector<bool>& need, size_t n_out) {
    variable_list result(n_out);
    variable_list targets;
    for (size_t i = 0; i < inputs.size(); ++i)
        if (need[i]) targets.push_back(inputs[i]);
    if (targets.empty()) return result;
    const auto g = torch::autograd::grad({out}, targets, {grad_out}, /*retain_graph=*/true,
                                         /*create_graph=*/true, /*allow_unused=*/true);
    size_t k = 0;
    for (size_t i = 0; i < inputs.size(); ++i)
        if (need[i]) {
            result[i] = g[k].defined() ? g[k] : torch::zeros_like(inputs[i]);
            ++k;
        }
    return result;
}

// The synthesis-layer tail (modconv_epilogue). A second derivative (path-length
// regularisation) differentiates the equivalent unfused ops.
class EpilogueFn : public torch::autograd::Function<EpilogueFn> {
  public:
    static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& y, const OptTensor& d,
                                 const OptTensor& noise, const OptTensor& b, int64_t act, double alpha,
                                 double gain, double clamp) {
        ctx->save_for_backward({y, value_or_undefined(d), value_or_undefined(noise), value_or_undefined(b)});
        save_act(ctx, act, alpha, gain, clamp, 1);
        Inputs::save(ctx, {true, d.has_value(), noise.has_value(), b.has_value()});
        return modconv_epilogue(y, d, noise, b, act, alpha, gain, clamp);
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const auto &y = saved[0], &d = saved[1], &noise = saved[2], &b = saved[3];
        const auto a = load_act(ctx);
        const std::vector<bool> need = {Inputs::needs(ctx, 0), Inputs::needs(ctx, 1), Inputs::needs(ctx, 2),
                                        Inputs::needs(ctx, 3)};
        if (torch::autograd::GradMode::is_enabled()) {  // create_graph: a graph through the inputs
            auto v = d.defined() ? y * d.view({d.size(0), d.size(1), 1, 1}) : y;
            if (noise.defined()) v = v + noise;
            const auto res = BiasActFn::apply(v, opt(b), a.act, a.alpha, a.gain, a.clamp, 1);
            return grads_with_graph(res, grads[0], {y, d, noise, b}, need, 8);
        }
        const auto g = like(grads[0], y);
        auto res = modconv_epilogue_backward(y, opt(d), opt(noise), opt(b), g, a.act, a.alpha, a.gain, a.clamp,
                                             need[0], need[1], need[2], need[3]);
        variable_list out(8);
        out[0] = std::get<0>(res);
        out[1] = std::get<1>(res);
        auto gnoise = std::get<2>(res);
        if (gnoise.defined() && gnoise.sizes() != noise.sizes()) gnoise = gnoise.sum_to_size(noise.sizes());
        out[2] = gnoise;
        out[3] = std::get<3>(res);
        return out;
    }
};

torch::Tensor modconv_epilogue_autograd(const torch::Tensor& y, const OptTensor& d, const OptTensor& noise,
                                        const OptTensor& b, int64_t act, double alpha, double gain, double clamp) {
    return EpilogueFn::apply(y, opt(value_or_undefined(d)), opt(value_or_undefined(noise)),
                             opt(value_or_undefined(b)), act, alpha, gain, clamp);
}

// bias_act(x @ (weight * weight_gain)^T, bias * bias_gain, dim=1): an equalized-lr dense layer
// as one node. A second derivative differentiates the equivalent unfused ops.
class FullyConnectedFn : public torch::autograd::Function<FullyConnectedFn> {
  public:
    static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                                 const OptTensor& bias, double weight_gain, double bias_gain, int64_t act,
                                 double alpha, double gain, double clamp) {
        const auto w = weight.to(x.scalar_type()) * weight_gain;
        const auto b = bias.has_value() ? OptTensor((bias->to(x.scalar_type()) * bias_gain).contiguous())
                                        : c10::nullopt;
        const auto v = x.matmul(w.t());
        // The scaled weight and bias too: the backward needs them, not the parameters.
        ctx->save_for_backward({x, weight, value_or_undefined(bias), v, w, value_or_undefined(b)});
        save_act(ctx, act, alpha, gain, clamp, 1);
        ctx->saved_data["weight_gain"] = weight_gain;
        ctx->saved_data["bias_gain"] = bias_gain;
        Inputs::save(ctx, {true, true, bias.has_value()});
        return bias_act(v, b, c10::nullopt, act, alpha, gain, clamp, 0, 1);
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const auto &x = saved[0], &weight = saved[1], &bias = saved[2], &v = saved[3], &w = saved[4];
        const auto b = opt(saved[5]);
        const auto a = load_act(ctx);
        const double wg = ctx->saved_data["weight_gain"].toDouble();
        const double bg = ctx->saved_data["bias_gain"].toDouble();
        const std::vector<bool> need = {Inputs::needs(ctx, 0), Inputs::needs(ctx, 1), Inputs::needs(ctx, 2)};
        if (torch::autograd::GradMode::is_enabled()) {  // create_graph: a graph through the inputs
            const auto wd = weight.to(x.scalar_type()) * wg;
            const auto bd = bias.defined() ? OptTensor(bias.to(x.scalar_type()) * bg) : c10::nullopt;
            const auto res = BiasActFn::apply(x.matmul(wd.t()), bd, a.act, a.alpha, a.gain, a.clamp, 1);
            return grads_with_graph(res, grads[0], {x, weight, bias}, need, 9);
        }
        variable_list out(9);
        const auto dv = bias_act(v, b, like(grads[0], v), a.act, a.alpha, a.gain, a.clamp, 1, 1);
        auto as = [](torch::Tensor t, const torch::Tensor& ref) {
            return t.scalar_type() == ref.scalar_type() ? t : t.to(ref.scalar_type());
        };
        if (need[0]) out[0] = torch::mm(dv, w);
        if (need[1]) out[1] = as(torch::mm(dv.t(), x).mul_(wg), weight);
        if (need[2]) out[2] = as(dv.sum(0).mul_(bg), bias);
        return out;
    }
};

torch::Tensor fully_connected_autograd(const torch::Tensor& x, const torch::Tensor& weight, const OptTensor& bias,
                                       double weight_gain, double bias_gain, int64_t act, double alpha, double gain,
                                       double clamp) {
    return FullyConnectedFn::apply(x, weight, opt(value_or_undefined(bias)), weight_gain, bias_gain, act, alpha,
                                   gain, clamp);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "genmix compiled kernels (CPU, and CUDA when built with it)";
    m.def("upfirdn2d", &upfirdn2d, "upsample, pad, FIR filter, downsample (see genmix.ops.upfirdn2d)",
          pybind11::arg("x"), pybind11::arg("f"), pybind11::arg("up_x"), pybind11::arg("up_y"),
          pybind11::arg("down_x"), pybind11::arg("down_y"), pybind11::arg("pad_x0"),
          pybind11::arg("pad_x1"), pybind11::arg("pad_y0"), pybind11::arg("pad_y1"),
          pybind11::arg("flip_filter"), pybind11::arg("gain"));
    m.def("bias_act", &bias_act, "bias + activation + gain + clamp (see genmix.ops.bias_act)",
          pybind11::arg("x"), pybind11::arg("b"), pybind11::arg("dy"), pybind11::arg("act"),
          pybind11::arg("alpha"), pybind11::arg("gain"), pybind11::arg("clamp"),
          pybind11::arg("grad_order"), pybind11::arg("dim"));
    m.def("sample_dirichlet", &sample_dirichlet, "Dirichlet rows from counter-based streams",
          pybind11::arg("concentration"), pybind11::arg("seed"));
    m.def("mix_batch", &mix_batch, "sample per-sample weights and mix sources, fused",
          pybind11::arg("xs"), pybind11::arg("ys"), pybind11::arg("out_dtype"), pybind11::arg("dist"),
          pybind11::arg("alpha"), pybind11::arg("scale"), pybind11::arg("seed"));
    m.def("modulate_weights", &modulate_weights, "per-sample modulated (and demodulated) weights",
          pybind11::arg("weight"), pybind11::arg("styles"), pybind11::arg("demodulate"), pybind11::arg("eps"));
    m.def("modulate_weights_backward", &modulate_weights_backward, "gradients of modulate_weights",
          pybind11::arg("weight"), pybind11::arg("styles"), pybind11::arg("d"), pybind11::arg("g"),
          pybind11::arg("demodulate"), pybind11::arg("eps"));
    m.def("modconv_epilogue", &modconv_epilogue,
          "demodulation, noise, bias, activation, gain and clamp on a convolution output (CPU)",
          pybind11::arg("y"), pybind11::arg("d"), pybind11::arg("noise"), pybind11::arg("b"),
          pybind11::arg("act"), pybind11::arg("alpha"), pybind11::arg("gain"), pybind11::arg("clamp"));
    m.def("modconv_epilogue_backward", &modconv_epilogue_backward,
          "gradients of modconv_epilogue with respect to y, d, noise and b (CPU)",
          pybind11::arg("y"), pybind11::arg("d"), pybind11::arg("noise"), pybind11::arg("b"),
          pybind11::arg("g"), pybind11::arg("act"), pybind11::arg("alpha"), pybind11::arg("gain"),
          pybind11::arg("clamp"), pybind11::arg("need_y"), pybind11::arg("need_d"),
          pybind11::arg("need_noise"), pybind11::arg("need_b"));
    m.def("bias_act_autograd", &bias_act_autograd, "bias_act as a C++ autograd node (twice differentiable)",
          pybind11::arg("x"), pybind11::arg("b"), pybind11::arg("act"), pybind11::arg("alpha"),
          pybind11::arg("gain"), pybind11::arg("clamp"), pybind11::arg("dim"));
    m.def("upfirdn2d_autograd", &upfirdn2d_autograd, "upfirdn2d as a C++ autograd node (any order)",
          pybind11::arg("x"), pybind11::arg("f"), pybind11::arg("params"), pybind11::arg("flip_filter"),
          pybind11::arg("gain"));
    m.def("modconv_epilogue_autograd", &modconv_epilogue_autograd, "modconv_epilogue as a C++ autograd node",
          pybind11::arg("y"), pybind11::arg("d"), pybind11::arg("noise"), pybind11::arg("b"),
          pybind11::arg("act"), pybind11::arg("alpha"), pybind11::arg("gain"), pybind11::arg("clamp"));
    m.def("fully_connected_autograd", &fully_connected_autograd,
          "equalized-lr dense layer + bias_act as a C++ autograd node",
          pybind11::arg("x"), pybind11::arg("weight"), pybind11::arg("bias"), pybind11::arg("weight_gain"),
          pybind11::arg("bias_gain"), pybind11::arg("act"), pybind11::arg("alpha"), pybind11::arg("gain"),
          pybind11::arg("clamp"));
    m.def("cpu_isa", &cpu_isa, "instruction set the per-target CPU kernels use (baseline, avx2, avx512)");
    m.def("set_cpu_isa", &set_cpu_isa,
          "use a lower instruction set for the per-target CPU kernels (tests); returns the one in use",
          pybind11::arg("name"));
    m.def("has_cuda", &has_cuda, "whether the CUDA kernels were compiled in");
    m.def("build_info", &build_info, "how this extension was built");
}
