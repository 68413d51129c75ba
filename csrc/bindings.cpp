// genmix._C: the one torch/pybind11 module. It validates tensors, allocates outputs, fills the
// plain parameter structs and hands raw pointers to the CPU or CUDA kernels. The kernels
// themselves know nothing of torch.

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

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
    return info;
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
    m.def("has_cuda", &has_cuda, "whether the CUDA kernels were compiled in");
    m.def("build_info", &build_info, "how this extension was built");
}
