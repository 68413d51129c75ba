// upfirdn2d CUDA kernels: zero-insertion upsampling, padding, FIR filtering and downsampling in
// one pass (see Upfirdn2dParams for the exact definition).
//
// Main path: a tiled kernel. A block owns a (tile_h x tile_w) tile of output pixels in each of
// `tile_planes` consecutive (n, c) planes. It stages the input rectangle that tile reads (in
// the accumulation type, zero outside the image) and the correlation kernel in shared memory,
// then every thread evaluates its outputs polyphase: only taps landing on real (not
// zero-inserted) samples are visited. The tile shape is chosen per launch so that small planes
// are packed several to a block and large ones are split.
//
// Compile-time instantiations cover the StyleGAN2 resampling patterns (up 2, down 2, plain
// filtering) with filters up to 4x4, 1x12, 12x1 and 12x12, and the one-axis passes of separable
// filters (1x12 along x, 12x1 along y); every other combination runs the same kernel with
// runtime factors. When even a one-pixel tile would not fit in shared memory
// (huge filters), a direct kernel reads global memory instead.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "elem.cuh"
#include "launchers.h"

namespace genmix {
namespace cuda {
namespace {

constexpr int kThreads = 256;
// Stay under the default dynamic shared memory limit so no per-kernel opt-in is needed.
constexpr int64_t kSmemBytes = 48 * 1024;
// Tiles of up to 64 x 32 outputs: 64 wide keeps each warp on consecutive output columns
// (coalesced stores, conflict-free shared reads at down 1). Planes smaller than that are packed,
// up to 64 per block, until a block holds ~1024 outputs, so all 256 threads have work.
constexpr int kMaxTileWShift = 6;
constexpr int kMaxTileHShift = 5;
constexpr int kMaxPlaneShift = 6;
constexpr int kTargetItemsShift = 10;
constexpr int64_t kMaxGrid = int64_t(1) << 30;

// Floor division for a possibly negative numerator and a positive divisor.
__host__ __device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
    const int64_t q = a / b;
    return (q * b > a) ? q - 1 : q;
}

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Launch geometry of the tiled kernel, fixed for one launch.
struct TileCfg {
    int tw_shift = 0, th_shift = 0, tp_shift = 0;  // log2 of tile width, height, planes
    int tin_w = 0, tin_h = 0;                      // staged input rectangle per plane
    int64_t tiles_x = 0, tiles_y = 0, groups = 0;  // groups: plane groups of 1 << tp_shift
    int64_t work = 0;                              // tiles_x * tiles_y * groups
};

// UPX..DNY > 0 fix the factors at compile time (0: read them from p). MFH/MFW > 0 bound the
// filter size at compile time so the tap loops unroll; they require fixed up factors.
template <typename T, int UPX, int UPY, int DNX, int DNY, int MFH, int MFW>
__global__ void __launch_bounds__(kThreads)
upfirdn2d_tiled(const T* __restrict__ x, const typename Elem<T>::Acc* __restrict__ f,
                T* __restrict__ y, const Upfirdn2dParams p, const TileCfg t) {
    using A = typename Elem<T>::Acc;
    static_assert((MFH == 0 && MFW == 0) || (UPX > 0 && UPY > 0), "bounded filters need fixed up");

    const int upx = UPX > 0 ? UPX : p.up_x;
    const int upy = UPY > 0 ? UPY : p.up_y;
    const int dnx = DNX > 0 ? DNX : p.down_x;
    const int dny = DNY > 0 ? DNY : p.down_y;
    const int fh = p.filter_h;
    const int fw = p.filter_w;
    const int ntaps = fh * fw;
    const int64_t planes = p.batch * p.channels;

    const int tw_mask = (1 << t.tw_shift) - 1;
    const int th_mask = (1 << t.th_shift) - 1;
    const int tile_planes = 1 << t.tp_shift;
    const int tin_w = t.tin_w;
    const int plane_elems = t.tin_w * t.tin_h;
    const int load_elems = plane_elems << t.tp_shift;
    const int items = 1 << (t.tw_shift + t.th_shift + t.tp_shift);

    // Layout: per-plane base offsets (int64, so first for alignment), taps, input tiles.
    extern __shared__ __align__(16) unsigned char smem_raw[];
    int64_t* s_in_base = reinterpret_cast<int64_t*>(smem_raw);
    int64_t* s_out_base = s_in_base + tile_planes;
    A* s_w = reinterpret_cast<A*>(s_out_base + tile_planes);
    A* s_x = s_w + ntaps;

    // The filter is staged once per block already as a correlation kernel, so the inner loop
    // never has to think about flipping.
    for (int i = threadIdx.x; i < ntaps; i += kThreads) {
        s_w[i] = p.flip_filter ? f[i] : f[ntaps - 1 - i];
    }

    const A gain = A(p.gain);

    for (int64_t work = blockIdx.x; work < t.work; work += gridDim.x) {
        const int64_t tile_x = work % t.tiles_x;
        const int64_t rest = work / t.tiles_x;
        const int64_t tile_y = rest % t.tiles_y;
        const int64_t plane0 = (rest / t.tiles_y) << t.tp_shift;
        const int64_t ox0 = tile_x << t.tw_shift;
        const int64_t oy0 = tile_y << t.th_shift;

        // Upsampled coordinate of tap 0 of the tile's first output, and the first input
        // sample at or after it: the origin of the staged rectangle.
        const int64_t qx0 = ox0 * dnx - p.pad_x0;
        const int64_t qy0 = oy0 * dny - p.pad_y0;
        const int64_t ix0 = ceil_div(qx0, upx);
        const int64_t iy0 = ceil_div(qy0, upy);
        // qx0 - ix0 * upx lies in (-upx, 0]; shifting by upx keeps per-output arithmetic
        // non-negative, so division and modulo by the (often constant) factor stay cheap.
        const int rx = int(qx0 - ix0 * upx) + upx;
        const int ry = int(qy0 - iy0 * upy) + upy;

        __syncthreads();  // the previous tile is no longer being read
        if (int(threadIdx.x) < tile_planes) {
            const int64_t plane = plane0 + threadIdx.x;
            int64_t in_base = 0, out_base = 0;
            if (plane < planes) {
                const int64_t n = plane / p.channels;
                const int64_t c = plane - n * p.channels;
                in_base = n * p.in_stride[0] + c * p.in_stride[1];
                out_base = n * p.out_stride[0] + c * p.out_stride[1];
            }
            s_in_base[threadIdx.x] = in_base;
            s_out_base[threadIdx.x] = out_base;
        }
        __syncthreads();

        // Consecutive threads take consecutive columns: coalesced reads for unit W stride.
        for (int i = threadIdx.x; i < load_elems; i += kThreads) {
            const int pl = i / plane_elems;
            const int r = i - pl * plane_elems;
            const int ly = r / tin_w;
            const int lx = r - ly * tin_w;
            const int64_t iy = iy0 + ly;
            const int64_t ix = ix0 + lx;
            A v = A(0);
            if (plane0 + pl < planes && iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w) {
                v = Elem<T>::load(x[s_in_base[pl] + iy * p.in_stride[2] + ix * p.in_stride[3]]);
            }
            s_x[i] = v;
        }
        __syncthreads();

        for (int i = threadIdx.x; i < items; i += kThreads) {
            const int lox = i & tw_mask;
            const int loy = (i >> t.tw_shift) & th_mask;
            const int pl = i >> (t.tw_shift + t.th_shift);
            const int64_t ox = ox0 + lox;
            const int64_t oy = oy0 + loy;
            if (ox >= p.out_w || oy >= p.out_h || plane0 + pl >= planes) continue;

            // Polyphase: tap kx hits a real sample iff (sx + kx) % upx == 0, so the first is
            // kx0 and the rest follow every upx taps; each step moves one staged column.
            const int sx = lox * dnx + rx;
            const int sy = loy * dny + ry;
            const int kx0 = (upx - sx % upx) % upx;
            const int ky0 = (upy - sy % upy) % upy;
            const int lx = (sx + kx0) / upx - 1;
            const int ly = (sy + ky0) / upy - 1;
            const A* xs = s_x + pl * plane_elems + ly * tin_w + lx;

            A acc = A(0);
            if constexpr (MFH > 0) {
                constexpr int kRows = (MFH + UPY - 1) / UPY;
                constexpr int kCols = (MFW + UPX - 1) / UPX;
#pragma unroll
                for (int j = 0; j < kRows; ++j) {
                    const int ky = ky0 + j * UPY;
                    if (ky < fh) {
                        const A* wrow = s_w + ky * fw;
                        const A* xrow = xs + j * tin_w;
#pragma unroll
                        for (int k = 0; k < kCols; ++k) {
                            const int kx = kx0 + k * UPX;
                            if (kx < fw) acc += wrow[kx] * xrow[k];
                        }
                    }
                }
            } else {
                const A* xrow = xs;
                for (int ky = ky0; ky < fh; ky += upy, xrow += tin_w) {
                    const A* wrow = s_w + ky * fw;
                    int k = 0;
                    for (int kx = kx0; kx < fw; kx += upx, ++k) acc += wrow[kx] * xrow[k];
                }
            }
            y[s_out_base[pl] + oy * p.out_stride[2] + ox * p.out_stride[3]] = Elem<T>::store(acc * gain);
        }
    }
}

// Fallback without shared memory, for filters too large to stage: one thread per output,
// still visiting only the taps that land on real input samples.
template <typename T>
__global__ void __launch_bounds__(kThreads)
upfirdn2d_direct(const T* __restrict__ x, const typename Elem<T>::Acc* __restrict__ f,
                 T* __restrict__ y, const Upfirdn2dParams p) {
    using A = typename Elem<T>::Acc;
    const int64_t upx = p.up_x, upy = p.up_y;
    const int fh = p.filter_h, fw = p.filter_w;
    const int64_t total = p.batch * p.channels * p.out_h * p.out_w;
    const A gain = A(p.gain);
    const int64_t step = int64_t(gridDim.x) * kThreads;

    for (int64_t idx = int64_t(blockIdx.x) * kThreads + threadIdx.x; idx < total; idx += step) {
        const int64_t ox = idx % p.out_w;
        int64_t rest = idx / p.out_w;
        const int64_t oy = rest % p.out_h;
        rest /= p.out_h;
        const int64_t c = rest % p.channels;
        const int64_t n = rest / p.channels;

        // Tap k reads upsampled position qb + k; it is a real sample iff (qb + k) % up == 0 and
        // it lies inside the input iff 0 <= qb + k < in * up. -qb is itself in the right
        // phase class, so clipping the range to it keeps the phase.
        const int64_t qxb = ox * p.down_x - p.pad_x0;
        const int64_t qyb = oy * p.down_y - p.pad_y0;
        const int64_t kx0 = ((-qxb) % upx + upx) % upx;
        const int64_t ky0 = ((-qyb) % upy + upy) % upy;
        const int64_t kx_lo = kx0 > -qxb ? kx0 : -qxb;
        const int64_t ky_lo = ky0 > -qyb ? ky0 : -qyb;
        const int64_t kx_hi = fw < p.in_w * upx - qxb ? fw : p.in_w * upx - qxb;
        const int64_t ky_hi = fh < p.in_h * upy - qyb ? fh : p.in_h * upy - qyb;

        const T* xp = x + n * p.in_stride[0] + c * p.in_stride[1];
        A acc = A(0);
        for (int64_t ky = ky_lo; ky < ky_hi; ky += upy) {
            const T* xrow = xp + ((qyb + ky) / upy) * p.in_stride[2];
            const int64_t wrow = p.flip_filter ? ky * fw : (fh - 1 - ky) * fw;
            for (int64_t kx = kx_lo; kx < kx_hi; kx += upx) {
                const A w = p.flip_filter ? f[wrow + kx] : f[wrow + fw - 1 - kx];
                acc += w * Elem<T>::load(xrow[((qxb + kx) / upx) * p.in_stride[3]]);
            }
        }
        y[n * p.out_stride[0] + c * p.out_stride[1] + oy * p.out_stride[2] + ox * p.out_stride[3]] =
            Elem<T>::store(acc * gain);
    }
}

int ceil_log2(int64_t v) {
    int s = 0;
    while ((int64_t(1) << s) < v && s < 62) ++s;
    return s;
}

// Picks the tile shape and its shared memory footprint; false when no tile fits.
bool plan_tiles(const Upfirdn2dParams& p, int64_t acc_bytes, TileCfg* cfg, int64_t* smem) {
    const int64_t planes = p.batch * p.channels;
    int tws = ceil_log2(p.out_w);
    int ths = ceil_log2(p.out_h);
    tws = tws < kMaxTileWShift ? tws : kMaxTileWShift;
    ths = ths < kMaxTileHShift ? ths : kMaxTileHShift;
    int tps = 0;
    while (tws + ths + tps < kTargetItemsShift && tps < kMaxPlaneShift && (int64_t(1) << tps) < planes) ++tps;

    for (;;) {
        // Any run of L consecutive upsampled positions holds at most ceil(L / up) samples.
        const int64_t tin_w = ((((int64_t(1) << tws) - 1) * p.down_x + p.filter_w) + p.up_x - 1) / p.up_x;
        const int64_t tin_h = ((((int64_t(1) << ths) - 1) * p.down_y + p.filter_h) + p.up_y - 1) / p.up_y;
        const int64_t bytes = 2 * int64_t(sizeof(int64_t)) * (int64_t(1) << tps) +
                              (int64_t(p.filter_h) * p.filter_w + (tin_w * tin_h << tps)) * acc_bytes;
        if (bytes <= kSmemBytes) {
            cfg->tw_shift = tws;
            cfg->th_shift = ths;
            cfg->tp_shift = tps;
            cfg->tin_w = int(tin_w);
            cfg->tin_h = int(tin_h);
            cfg->tiles_x = (p.out_w + (int64_t(1) << tws) - 1) >> tws;
            cfg->tiles_y = (p.out_h + (int64_t(1) << ths) - 1) >> ths;
            cfg->groups = (planes + (int64_t(1) << tps) - 1) >> tps;
            cfg->work = cfg->tiles_x * cfg->tiles_y * cfg->groups;
            *smem = bytes;
            return true;
        }
        // Shed planes first, then rows, and keep the width (coalescing) as long as possible.
        if (tps > 0) {
            --tps;
        } else if (ths > 0) {
            --ths;
        } else if (tws > 0) {
            --tws;
        } else {
            return false;
        }
    }
}

template <typename T, int UPX, int UPY, int DNX, int DNY, int MFH, int MFW>
cudaError_t launch_tiled(const T* x, const typename Elem<T>::Acc* f, T* y, const Upfirdn2dParams& p,
                         const TileCfg& cfg, int64_t smem, cudaStream_t stream) {
    const int64_t grid = cfg.work < kMaxGrid ? cfg.work : kMaxGrid;
    upfirdn2d_tiled<T, UPX, UPY, DNX, DNY, MFH, MFW>
        <<<dim3(unsigned(grid)), dim3(kThreads), size_t(smem), stream>>>(x, f, y, p, cfg);
    return cudaGetLastError();
}

// Filter-size classes with unrolled kernels; -1: none fits. Row and column filters come
// first: they are the separable passes, whose up/down act on one axis only.
int filter_class(int fh, int fw) {
    if (fh == 1 && fw <= 12) return 1;
    if (fw == 1 && fh <= 12) return 2;
    if (fh <= 4 && fw <= 4) return 0;
    if (fh <= 12 && fw <= 12) return 3;
    return -1;
}

template <typename T, int UP, int DN>
cudaError_t launch_fixed(int fclass, const T* x, const typename Elem<T>::Acc* f, T* y,
                         const Upfirdn2dParams& p, const TileCfg& cfg, int64_t smem, cudaStream_t s) {
    switch (fclass) {
        case 0: return launch_tiled<T, UP, UP, DN, DN, 4, 4>(x, f, y, p, cfg, smem, s);
        case 1: return launch_tiled<T, UP, UP, DN, DN, 1, 12>(x, f, y, p, cfg, smem, s);
        case 2: return launch_tiled<T, UP, UP, DN, DN, 12, 1>(x, f, y, p, cfg, smem, s);
        case 3: return launch_tiled<T, UP, UP, DN, DN, 12, 12>(x, f, y, p, cfg, smem, s);
        default: return launch_tiled<T, 0, 0, 0, 0, 0, 0>(x, f, y, p, cfg, smem, s);
    }
}

template <typename T>
cudaError_t run(const void* xv, const void* fv, void* yv, const Upfirdn2dParams& p, cudaStream_t stream) {
    using A = typename Elem<T>::Acc;
    const T* x = static_cast<const T*>(xv);
    const A* f = static_cast<const A*>(fv);
    T* y = static_cast<T*>(yv);

    TileCfg cfg;
    int64_t smem = 0;
    if (!plan_tiles(p, int64_t(sizeof(A)), &cfg, &smem)) {
        const int64_t total = p.batch * p.channels * p.out_h * p.out_w;
        int64_t blocks = (total + kThreads - 1) / kThreads;
        blocks = blocks < kMaxGrid ? blocks : kMaxGrid;
        upfirdn2d_direct<T><<<dim3(unsigned(blocks)), dim3(kThreads), 0, stream>>>(x, f, y, p);
        return cudaGetLastError();
    }

    const int fclass = filter_class(p.filter_h, p.filter_w);
    const int upx = p.up_x, upy = p.up_y, dnx = p.down_x, dny = p.down_y;
    // Separable passes: a row filter resampling along x only, or a column filter along y.
    if (fclass == 1 && upy == 1 && dny == 1) {
        if (upx == 2 && dnx == 1) return launch_tiled<T, 2, 1, 1, 1, 1, 12>(x, f, y, p, cfg, smem, stream);
        if (upx == 1 && dnx == 2) return launch_tiled<T, 1, 1, 2, 1, 1, 12>(x, f, y, p, cfg, smem, stream);
    }
    if (fclass == 2 && upx == 1 && dnx == 1) {
        if (upy == 2 && dny == 1) return launch_tiled<T, 1, 2, 1, 1, 12, 1>(x, f, y, p, cfg, smem, stream);
        if (upy == 1 && dny == 2) return launch_tiled<T, 1, 1, 1, 2, 12, 1>(x, f, y, p, cfg, smem, stream);
    }
    if (fclass >= 0 && upx == upy && dnx == dny) {
        if (upx == 1 && dnx == 1) return launch_fixed<T, 1, 1>(fclass, x, f, y, p, cfg, smem, stream);
        if (upx == 2 && dnx == 1) return launch_fixed<T, 2, 1>(fclass, x, f, y, p, cfg, smem, stream);
        if (upx == 1 && dnx == 2) return launch_fixed<T, 1, 2>(fclass, x, f, y, p, cfg, smem, stream);
    }
    return launch_tiled<T, 0, 0, 0, 0, 0, 0>(x, f, y, p, cfg, smem, stream);
}

}  // namespace

cudaError_t upfirdn2d(const void* x, const void* f, void* y, DType dtype, const Upfirdn2dParams& p,
                      cudaStream_t stream) {
    if (p.up_x < 1 || p.up_y < 1 || p.down_x < 1 || p.down_y < 1 || p.filter_h < 1 || p.filter_w < 1 ||
        p.batch < 0 || p.channels < 0 || p.in_h < 0 || p.in_w < 0) {
        return cudaErrorInvalidValue;
    }
    if (p.batch == 0 || p.channels == 0 || p.out_h <= 0 || p.out_w <= 0) return cudaSuccess;
    switch (dtype) {
        case DType::kF16: return run<__half>(x, f, y, p, stream);
        case DType::kBF16: return run<__nv_bfloat16>(x, f, y, p, stream);
        case DType::kF32: return run<float>(x, f, y, p, stream);
        case DType::kF64: return run<double>(x, f, y, p, stream);
        case DType::kU8: break;  // filtering needs a floating type
    }
    return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace genmix
