// bias_act on the CPU: bias add, activation, gain and clamp (or their first / second
// derivative) fused into one pass over memory.
//
// The activation, derivative order, clamp and bias mode are template parameters, so every
// combination gets its own branch-free inner loop and the switch happens once per call. The
// storage is walked as runs that share one bias value (scalar bias, long runs) or as runs over
// a repeating bias pattern (short channel strides, e.g. channels innermost), so the inner loop
// is always a plain elementwise loop the compiler can vectorise. The loops live in
// bias_act_impl.inc, compiled once per instruction set (isa.h): the extension is built for the
// x86-64 baseline, and AVX-512 does the same work in a quarter of the instructions.

#include <algorithm>
#include <math.h>

#include <cmath>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "isa.h"
#include "kernels.h"

// GCC's default -ftrapping-math forbids turning the selects of relu / lrelu / clamp into vector
// blends (a comparison could raise an FP exception flag), which leaves every loop scalar and
// branchy. Nothing here reads FP exception flags, and NaN / inf results are unaffected, so
// the kernels are compiled without that guarantee whatever flags the build passes.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

namespace genmix {
namespace cpu {

#ifdef GENMIX_MULTI_ISA
GENMIX_ISA_BEGIN_AVX512
namespace isa_avx512 {
namespace {
#include "bias_act_impl.inc"
}  // namespace
}  // namespace isa_avx512
GENMIX_ISA_END
GENMIX_ISA_BEGIN_AVX2
namespace isa_avx2 {
namespace {
#include "bias_act_impl.inc"
}  // namespace
}  // namespace isa_avx2
GENMIX_ISA_END
#endif
namespace isa_baseline {
namespace {
#include "bias_act_impl.inc"
}  // namespace
}  // namespace isa_baseline

template <typename T>
void bias_act(const T* x, const T* b, const T* dy, T* out, const BiasActParams& p) {
    if (p.numel <= 0) return;
#ifdef GENMIX_MULTI_ISA
    switch (cpu_isa()) {
        case kIsaAvx512: isa_avx512::bias_act_entry<T>(x, b, dy, out, p); return;
        case kIsaAvx2: isa_avx2::bias_act_entry<T>(x, b, dy, out, p); return;
        default: break;
    }
#endif
    isa_baseline::bias_act_entry<T>(x, b, dy, out, p);
}

template <typename T>
static void run_epilogue(const isa_baseline::EpiArgs<T>& a, const EpilogueParams& p, int order) {
    if (p.batch <= 0 || p.channels <= 0 || p.height <= 0 || p.width <= 0) return;
#ifdef GENMIX_MULTI_ISA
    switch (cpu_isa()) {
        case kIsaAvx512:
            isa_avx512::epilogue_entry<T>(
                {a.y, a.d, a.noise, a.b, a.g, a.out, a.gy, a.gd, a.gnoise, a.gb}, p, order);
            return;
        case kIsaAvx2:
            isa_avx2::epilogue_entry<T>(
                {a.y, a.d, a.noise, a.b, a.g, a.out, a.gy, a.gd, a.gnoise, a.gb}, p, order);
            return;
        default: break;
    }
#endif
    isa_baseline::epilogue_entry<T>(a, p, order);
}

template <typename T>
void modconv_epilogue(const T* y, const T* d, const T* noise, const T* b, T* out,
                      const EpilogueParams& p) {
    run_epilogue<T>({y, d, noise, b, nullptr, out, nullptr, nullptr, nullptr, nullptr}, p, 0);
}

template <typename T>
void modconv_epilogue_backward(const T* y, const T* d, const T* noise, const T* b, const T* g,
                               T* gy, T* gd, T* gnoise, T* gb, const EpilogueParams& p) {
    run_epilogue<T>({y, d, noise, b, g, nullptr, gy, gd, gnoise, gb}, p, 1);
}

template void modconv_epilogue<float>(const float*, const float*, const float*, const float*,
                                      float*, const EpilogueParams&);
template void modconv_epilogue<double>(const double*, const double*, const double*, const double*,
                                       double*, const EpilogueParams&);
template void modconv_epilogue_backward<float>(const float*, const float*, const float*, const float*,
                                               const float*, float*, float*, float*, float*,
                                               const EpilogueParams&);
template void modconv_epilogue_backward<double>(const double*, const double*, const double*,
                                                const double*, const double*, double*, double*,
                                                double*, double*, const EpilogueParams&);

template void bias_act<float>(const float*, const float*, const float*, float*, const BiasActParams&);
template void bias_act<double>(const double*, const double*, const double*, double*,
                               const BiasActParams&);

}  // namespace cpu
}  // namespace genmix
