"""modulated_conv2d: fused weight kernels against the reference, resampling against its
definition, fused and non-fused paths against each other, gradients."""

import pytest
import torch
import torch.nn.functional as F

from backends import cpu_kernel_impls
from genmix.ops import BackendUnavailable, modulated_conv2d, setup_filter, upfirdn2d
from genmix.ops.modulated_conv2d import conv2d_resample, modulate_weights_ref

CASES = [  # (up, down, kernel)
    (1, 1, 3), (1, 1, 1), (2, 1, 3), (2, 1, 1), (1, 2, 3), (1, 2, 1),
]


def _inputs(n=2, i=3, o=4, k=3, res=6, dtype=torch.float64):
    x = torch.randn(n, i, res, res, dtype=dtype)
    weight = torch.randn(o, i, k, k, dtype=dtype)
    styles = torch.randn(n, i, dtype=dtype) + 1.0
    return x, weight, styles


def _modconv(x, weight, styles, up, down, impl, **kw):
    # The filter lives on x's device: a CPU filter with CUDA activations is refused (ValueError
    # naming resample_filter), which is how every GPU resampling case once failed.
    f = setup_filter([1, 3, 3, 1], device=x.device).to(x.dtype) if (up > 1 or down > 1) else None
    return modulated_conv2d(x, weight, styles, up=up, down=down, padding=weight.shape[-1] // 2,
                            resample_filter=f, impl=impl, **kw)


def test_resampling_matches_its_definition():
    # Transposed-conv upsampling and strided-conv downsampling are shortcuts: they must equal
    # "FIR-upsample then convolve" and "FIR then convolve then subsample" exactly.
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    for flip_weight in (True, False):
        wc = w if flip_weight else w.flip([2, 3])
        up = conv2d_resample(x, w, f, up=2, padding=(1, 1, 1, 1), flip_weight=flip_weight, impl="ref")
        naive = F.conv2d(upfirdn2d(x, f, up=2, padding=(1 + 2, 1 + 1, 1 + 2, 1 + 1), gain=4, impl="ref"), wc)
        torch.testing.assert_close(up, naive)
        assert up.shape[-2:] == (14, 12)
        down = conv2d_resample(x, w, f, down=2, padding=(1, 1, 1, 1), flip_weight=flip_weight, impl="ref")
        naive = F.conv2d(upfirdn2d(x, f, padding=(2, 2, 2, 2), impl="ref"), wc)[:, :, ::2, ::2]
        torch.testing.assert_close(down, naive)


@pytest.mark.parametrize("up, down, k", CASES)
@pytest.mark.parametrize("demodulate", [True, False])
def test_reference_fused_equals_nonfused(up, down, k, demodulate):
    x, weight, styles = _inputs(k=k)
    noise = torch.randn(1, 1, 1, 1, dtype=torch.float64)
    a = _modconv(x, weight, styles, up, down, "ref", demodulate=demodulate, fused_modconv=True)
    b = _modconv(x, weight, styles, up, down, "ref", demodulate=demodulate, fused_modconv=False)
    torch.testing.assert_close(a, b)
    # Per-sample definition: each sample convolved with its own modulated weights.
    w, _ = modulate_weights_ref(weight, styles, demodulate)
    for s in range(x.shape[0]):
        ys = _modconv(x[s:s + 1], w[s], torch.ones(1, x.shape[1], dtype=x.dtype), up, down, "ref", demodulate=False)
        torch.testing.assert_close(a[s:s + 1], ys)
    with_noise = _modconv(x, weight, styles, up, down, "ref", demodulate=demodulate, noise=noise)
    torch.testing.assert_close(with_noise, a + noise)
    assert a.shape[-1] == 6 * up // down


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("up, down, k", CASES)
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_kernels_match_reference_forward_and_backward(impl, up, down, k, demodulate, fused):
    x, weight, styles = _inputs(k=k)
    noise = torch.randn(2, 1, 6 * up // down, 6 * up // down, dtype=torch.float64)
    outs = []
    for name in (impl, "ref"):
        xs, ws, ss = (t.clone().requires_grad_(True) for t in (x, weight, styles))
        y = _modconv(xs, ws, ss, up, down, name, demodulate=demodulate, fused_modconv=fused, noise=noise)
        grads = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum(),
                                    (xs, ws, ss))
        outs.append((y,) + grads)
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("impl", cpu_kernel_impls())
def test_gradcheck(impl):
    x, weight, styles = _inputs(n=2, i=2, o=3, k=3, res=4)
    f = setup_filter([1, 3, 3, 1]).double()
    # The interpreter is slow: Triton checks the weight kernels once, C++ every resampling.
    for up, down in ((1, 1),) if impl == "triton" else ((1, 1), (2, 1), (1, 2)):
        def fn(a, w, s):
            return modulated_conv2d(a, w, s, up=up, down=down, padding=1, resample_filter=f, impl=impl)
        assert torch.autograd.gradcheck(fn, tuple(t.clone().requires_grad_(True) for t in (x, weight, styles)))


@pytest.mark.parametrize("impl", cpu_kernel_impls())
def test_second_order_gradients_for_path_length_regularisation(impl):
    x, weight, styles = _inputs(n=2, i=2, o=3, k=3, res=4)
    styles.requires_grad_(True)
    w = weight.clone().requires_grad_(True)

    def second(name):
        y = modulated_conv2d(x, w, styles, padding=1, impl=name)
        (g,) = torch.autograd.grad(y.square().sum(), styles, create_graph=True)
        return torch.autograd.grad(g.square().sum(), (w, styles))

    for got, want in zip(second(impl), second("ref")):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_float32_and_channels_last():
    x, weight, styles = (t.float() for t in _inputs(n=3, i=8, o=5, k=3, res=9))
    ref = _modconv(x, weight, styles, 2, 1, "ref")
    got = _modconv(x.contiguous(memory_format=torch.channels_last), weight, styles, 2, 1, "cpp")
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "change, exc, pattern",
    [
        (dict(x=torch.randn(2, 3, 6)), ValueError, "x must have 4 dimensions"),
        (dict(weight=torch.randn(4, 2, 3, 3)), ValueError, "input channels"),
        (dict(styles=torch.randn(2, 4)), ValueError, "styles must have shape"),
        (dict(styles=torch.ones(2, 3, dtype=torch.int64)), TypeError, "styles must be a floating-point"),
        (dict(up=2), ValueError, "needs a resample_filter"),
        (dict(up=0), ValueError, "up and down must be >= 1"),
        (dict(noise=torch.ones(1, device="meta")), ValueError, "noise is on meta"),
        (dict(impl="cuda"), BackendUnavailable, "CUDA tensors"),
    ],
)
def test_bad_arguments(change, exc, pattern):
    x, weight, styles = (t.float() for t in _inputs())
    args = dict(x=x, weight=weight, styles=styles, padding=1)
    args.update(change)
    with pytest.raises(exc, match=pattern):
        modulated_conv2d(**args)


def test_resampling_helper_puts_the_filter_on_the_inputs_device():
    # The GPU comparison below builds its inputs with this helper. On "meta" (a device other
    # than the CPU, available everywhere) a filter left on the CPU raises; on x's device it runs.
    x, weight, styles = (t.to("meta") for t in _inputs())
    for up, down in ((2, 1), (1, 2)):
        assert _modconv(x, weight, styles, up, down, "ref").device.type == "meta"
    with pytest.raises(ValueError, match="resample_filter is on cpu"):
        modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=setup_filter([1, 3, 3, 1]), impl="ref")


# ---------------------------------------------------------------- GPU (skipped without one)

@pytest.fixture
def full_fp32_convolutions():
    """cuDNN runs float32 convolutions in TF32 on Ampere and Hopper by default (10-bit mantissa),
    which alone breaks a 1e-4 comparison with a float64 reference; compare in true float32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["cuda", "triton"])
@pytest.mark.parametrize("up, down, k", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gpu_matches_reference(impl, up, down, k, dtype, full_fp32_convolutions):
    x, weight, styles = (t.float().cuda() for t in _inputs(n=4, i=16, o=8, k=k, res=8))
    xs = x.to(dtype).requires_grad_(True)
    ws, ss = weight.clone().requires_grad_(True), styles.clone().requires_grad_(True)
    y = _modconv(xs, ws, ss, up, down, impl)
    y_ref = _modconv(x.double(), weight.double(), styles.double(), up, down, "ref")
    tol = 2e-2 if dtype == torch.float16 else 1e-4
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)
    gw, gs = torch.autograd.grad(y.float().sum(), (ws, ss))
    wr, sr = weight.double().requires_grad_(True), styles.double().requires_grad_(True)
    gw_ref, gs_ref = torch.autograd.grad(_modconv(x.double(), wr, sr, up, down, "ref").sum(), (wr, sr))
    torch.testing.assert_close(gw.double(), gw_ref, rtol=tol * 5, atol=tol * 5)
    torch.testing.assert_close(gs.double(), gs_ref, rtol=tol * 5, atol=tol * 5)


# ------------------------------------------- modulated_conv2d_bias_act (fused epilogue, C++)

from genmix.ops import _backend, bias_act  # noqa: E402
from genmix.ops.modulated_conv2d import modulated_conv2d_bias_act, prefers_channels_last  # noqa: E402


@pytest.fixture(params=["baseline", "avx2", "avx512"])
def cpu_isa(request):
    """Runs the test with the C++ kernels compiled for one instruction set (skipped where the
    CPU lacks it), then restores the best one."""
    ext = _backend.extension()
    if ext.set_cpu_isa(request.param) != request.param:
        ext.set_cpu_isa("best")
        pytest.skip(f"this CPU has no {request.param}")
    yield request.param
    ext.set_cpu_isa("best")


def _noise(kind, n, res, gen):
    return {"none": None, "per_sample": torch.randn(n, 1, res, res, dtype=torch.float64, generator=gen),
            "const": torch.randn(res, res, dtype=torch.float64, generator=gen),
            "scalar": torch.randn(1, 1, 1, 1, dtype=torch.float64, generator=gen),
            "per_channel": torch.randn(1, 5, 1, 1, dtype=torch.float64, generator=gen)}[kind]


def _layout(x, layout):
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a view with gaps: every other column of a wider tensor
        wide = torch.zeros(*x.shape[:3], 2 * x.shape[3], dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


def _tail_and_grads(impl, x, weight, styles, noise, bias, kw, seed=0):
    leaves = [t.clone().requires_grad_(True) if t is not None else None for t in (x, weight, styles, noise, bias)]
    y = modulated_conv2d_bias_act(leaves[0], leaves[1], leaves[2], noise=leaves[3], bias=leaves[4],
                                  impl=impl, **kw)
    probe = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(seed))
    grads = torch.autograd.grad((y * probe).sum(), [t for t in leaves if t is not None])
    return (y,) + grads


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("noise_kind", ["none", "per_sample", "const", "scalar", "per_channel"])
@pytest.mark.parametrize("up, demodulate, fused", [(1, True, False), (2, True, False), (1, False, False),
                                                   (1, True, True), (2, False, True)])
@pytest.mark.parametrize("act, clamp", [("lrelu", None), ("lrelu", 0.5), ("linear", 0.8), ("tanh", None)])
def test_fused_tail_matches_reference(cpu_isa, layout, noise_kind, up, demodulate, fused, act, clamp):
    gen = torch.Generator().manual_seed(11)
    n, i, o, res = 3, 6, 5, 5  # odd sizes everywhere
    x = _layout(torch.randn(n, i, res, res, dtype=torch.float64, generator=gen), layout)
    weight = torch.randn(o, i, 3, 3, dtype=torch.float64, generator=gen)
    styles = torch.randn(n, i, dtype=torch.float64, generator=gen) + 1.0
    bias = torch.randn(o, dtype=torch.float64, generator=gen)
    noise = _noise(noise_kind, n, res * up, gen)
    f = setup_filter([1, 3, 3, 1]).double() if up > 1 else None
    kw = dict(act=act, clamp=clamp, gain=1.3, up=up, padding=1, resample_filter=f, demodulate=demodulate,
              fused_modconv=fused, flip_weight=up == 1)
    for got, want in zip(_tail_and_grads("cpp", x, weight, styles, noise, bias, kw),
                         _tail_and_grads("ref", x, weight, styles, noise, bias, kw)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_fused_tail_float32_channels_last_and_no_bias():
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(4, 16, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    weight, styles = torch.randn(32, 16, 3, 3, generator=gen), torch.randn(4, 16, generator=gen) + 1
    noise = torch.randn(4, 1, 9, 9, generator=gen)
    kw = dict(act="lrelu", padding=1, fused_modconv=False)
    got = _tail_and_grads("cpp", x, weight, styles, noise, None, kw)
    want = _tail_and_grads("ref", x, weight, styles, noise, None, kw)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_reference_tail_is_the_two_ops():
    x, weight, styles = _inputs(n=2, i=3, o=4, k=3, res=6)
    noise, bias = torch.randn(2, 1, 6, 6, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    got = modulated_conv2d_bias_act(x, weight, styles, noise=noise, bias=bias, act="lrelu", clamp=0.3,
                                    padding=1, fused_modconv=False, impl="ref")
    want = bias_act(modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused_modconv=False, impl="ref"),
                    bias, act="lrelu", clamp=0.3, impl="ref")
    assert torch.equal(got, want)


def test_fused_tail_gradcheck():
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen)
    styles = torch.randn(2, 3, dtype=torch.float64, generator=gen) + 1
    noise = torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=gen)
    bias = torch.randn(4, dtype=torch.float64, generator=gen)
    inputs = tuple(t.requires_grad_(True) for t in (x, weight, styles, noise, bias))

    def fn(a, w, s, nz, b):  # tanh: smooth, so finite differences hold everywhere
        return modulated_conv2d_bias_act(a, w, s, noise=nz, bias=b, act="tanh", padding=1,
                                         fused_modconv=False, impl="cpp")

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_fused_tail_second_order_matches_reference():
    # Path-length regularisation differentiates d|y|/d styles once more.
    x, weight, styles = _inputs(n=2, i=2, o=3, k=3, res=4)
    noise, bias = torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)

    def second(impl):
        s = styles.clone().requires_grad_(True)
        w = weight.clone().requires_grad_(True)
        b = bias.clone().requires_grad_(True)
        y = modulated_conv2d_bias_act(x, w, s, noise=noise, bias=b, act="lrelu", padding=1,
                                      fused_modconv=False, impl=impl)
        (g,) = torch.autograd.grad(y.square().sum(), s, create_graph=True)
        return torch.autograd.grad(g.square().sum(), (w, s, b), allow_unused=True)

    for got, want in zip(second("cpp"), second("ref")):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_pointwise_and_subsampled_1x1_convolutions_match_reference():
    gen = torch.Generator().manual_seed(14)
    f = setup_filter([1, 3, 3, 1]).double()
    for i, o in ((1, 6), (6, 1), (3, 4), (8, 8)):
        x = torch.randn(2, i, 7, 6, dtype=torch.float64, generator=gen).to(memory_format=torch.channels_last)
        w = torch.randn(o, i, 1, 1, dtype=torch.float64, generator=gen)
        for kw in (dict(padding=(0, 0, 0, 0)), dict(f=f, down=2, padding=(1, 1, 1, 1))):
            xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
            got = conv2d_resample(xs, ws, impl="auto", **kw)
            want = conv2d_resample(x, w, impl="ref", **kw)
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
            assert torch.autograd.gradcheck(lambda a, b: conv2d_resample(a, b, impl="auto", **kw), (xs, ws))


def test_channels_last_is_preferred_only_for_the_cpp_kernels():
    assert prefers_channels_last("auto", "cpu") and prefers_channels_last("cpp", torch.device("cpu"))
    assert not prefers_channels_last("ref", "cpu")
    assert not prefers_channels_last("auto", "meta")
