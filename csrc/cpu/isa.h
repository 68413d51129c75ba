// Which vector instruction set the CPU kernels that are compiled several times use.
//
// A few hot kernels are compiled once per instruction set (x86-64 baseline, AVX2 + FMA,
// AVX-512) inside target regions, since the extension itself is built for the baseline; the
// best one the CPU supports is chosen at run time. set_cpu_isa lowers the choice (tests run
// every variant on one machine; it never raises it above what the CPU supports).
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GENMIX_MULTI_ISA 1
// Region bodies: `GENMIX_ISA_BEGIN_AVX512 namespace isa_avx512 { ... } GENMIX_ISA_END`.
#define GENMIX_ISA_BEGIN_AVX512                                                                 \
    _Pragma("GCC push_options")                                                                 \
    _Pragma("GCC target(\"avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512\")")
#define GENMIX_ISA_BEGIN_AVX2 \
    _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define GENMIX_ISA_END _Pragma("GCC pop_options")
#endif

namespace genmix {
namespace cpu {

enum CpuIsa : int { kIsaBaseline = 0, kIsaAvx2 = 1, kIsaAvx512 = 2 };

// The instruction set in use: the best supported one, or lower after set_cpu_isa.
CpuIsa cpu_isa();
// The best instruction set this CPU supports (and the build compiled in).
CpuIsa cpu_isa_supported();
// Use `isa` (clamped to what is supported); returns the one now in use.
CpuIsa set_cpu_isa(CpuIsa isa);
const char* cpu_isa_name(CpuIsa isa);

}  // namespace cpu
}  // namespace genmix
