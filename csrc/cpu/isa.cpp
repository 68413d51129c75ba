// Run-time choice of the instruction set for the kernels compiled per target (see isa.h).

#include "isa.h"

#include <atomic>

namespace genmix {
namespace cpu {
namespace {

CpuIsa detect() {
#ifdef GENMIX_MULTI_ISA
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return kIsaAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kIsaAvx2;
#endif
    return kIsaBaseline;
}

std::atomic<int>& current() {
    static std::atomic<int> isa{static_cast<int>(cpu_isa_supported())};
    return isa;
}

}  // namespace

CpuIsa cpu_isa_supported() {
    static const CpuIsa best = detect();
    return best;
}

CpuIsa cpu_isa() { return static_cast<CpuIsa>(current().load(std::memory_order_relaxed)); }

CpuIsa set_cpu_isa(CpuIsa isa) {
    const int best = static_cast<int>(cpu_isa_supported());
    int want = static_cast<int>(isa);
    want = want < 0 ? 0 : (want > best ? best : want);
    current().store(want, std::memory_order_relaxed);
    return static_cast<CpuIsa>(want);
}

const char* cpu_isa_name(CpuIsa isa) {
    switch (isa) {
        case kIsaAvx512: return "avx512";
        case kIsaAvx2: return "avx2";
        default: return "baseline";
    }
}

}  // namespace cpu
}  // namespace genmix
