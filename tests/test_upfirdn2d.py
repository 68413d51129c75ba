"""upfirdn2d: every backend against the pure-PyTorch reference, forward and backward."""

import math
import random

import pytest
import torch

from backends import cpu_kernel_impls
from genmix.ops import BackendUnavailable, setup_filter, upfirdn2d
from genmix.ops import _backend, _library
from genmix.ops.upfirdn2d import upfirdn2d_ref


def _case(rng, cap_up=3):
    """A random valid configuration: factors, paddings (incl. negative), filter shape."""
    while True:
        up = (rng.randint(1, cap_up), rng.randint(1, cap_up))
        down = (rng.randint(1, 3), rng.randint(1, 3))
        separable = rng.random() < 0.25
        if separable:
            k = rng.randint(1, 6)
            fshape = (k,)
            fh = fw = k
        else:
            fh, fw = rng.randint(1, 6), rng.randint(1, 6)
            fshape = (fh, fw)
        h, w = rng.randint(1, 9), rng.randint(1, 9)
        pad = tuple(rng.randint(-2, 4) for _ in range(4))
        out_h = (h * up[1] + pad[2] + pad[3] - fh) // down[1] + 1
        out_w = (w * up[0] + pad[0] + pad[1] - fw) // down[0] + 1
        if out_h >= 1 and out_w >= 1:
            return dict(shape=(rng.randint(1, 2), rng.randint(1, 3), h, w), up=up, down=down,
                        padding=pad, fshape=fshape, flip=rng.random() < 0.5,
                        gain=rng.choice([1.0, 4.0, 0.5]))


RNG = random.Random(1234)
CASES = [_case(RNG) for _ in range(40)]
# The StyleGAN2 configurations, always covered.
STYLEGAN_CASES = [
    dict(shape=(2, 3, 8, 8), up=2, down=1, padding=(2, 1, 2, 1), fshape=(4, 4), flip=False, gain=4.0),
    dict(shape=(2, 3, 8, 8), up=1, down=2, padding=(1, 1, 1, 1), fshape=(4, 4), flip=False, gain=1.0),
    dict(shape=(2, 3, 7, 9), up=2, down=1, padding=(2, 1, 2, 1), fshape=(4,), flip=True, gain=4.0),
    dict(shape=(1, 2, 5, 6), up=1, down=1, padding=(1, 2, 1, 2), fshape=(4, 4), flip=False, gain=1.0),
    dict(shape=(1, 2, 6, 6), up=1, down=1, padding=(-1, -2, 0, -1), fshape=(1, 1), flip=False, gain=1.0),
    dict(shape=(1, 2, 4, 4), up=4, down=1, padding=(6, 5, 6, 5), fshape=(12, 12), flip=False, gain=16.0),
    dict(shape=(1, 2, 3, 3), up=1, down=1, padding=(4, 4, 4, 4), fshape=(9, 9), flip=False, gain=1.0),
    dict(shape=(1, 2, 5, 6), up=2, down=1, padding=(1, 1, 1, 1), fshape=(3,), flip=False, gain=-2.0),
]


def _case_id(case):
    return "x{shape}-up{up}-dn{down}-p{padding}-f{fshape}-fl{flip}".format(**case).replace(" ", "")


def _inputs(case, dtype=torch.float64, device="cpu"):
    x = torch.randn(case["shape"], dtype=dtype, device=device)
    f = torch.rand(case["fshape"], dtype=torch.float32, device=device) + 0.1
    return x, f


def _args(case):
    return dict(up=case["up"], down=case["down"], padding=case["padding"],
                flip_filter=case["flip"], gain=case["gain"])


def _tolerance(dtype):
    return {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}[dtype]


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("case", STYLEGAN_CASES + CASES, ids=_case_id)
def test_forward_backward_matches_reference(impl, case):
    x, f = _inputs(case)
    x.requires_grad_(True)
    y = upfirdn2d(x, f, **_args(case), impl=impl)
    y_ref = upfirdn2d(x, f, **_args(case), impl="ref")
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    dy = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, dy)
    (gx_ref,) = torch.autograd.grad(y_ref, x, dy)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("layout", ["channels_last", "strided", "transposed"])
def test_layouts(impl, layout):
    case = STYLEGAN_CASES[0]
    base = torch.randn(2, 6, 8, 8)
    if layout == "channels_last":
        x = base.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = base[:, ::2]
    else:
        x = base.transpose(2, 3)
    f = setup_filter([1, 3, 3, 1], gain=4)
    y = upfirdn2d(x, f, up=2, padding=case["padding"], impl=impl)
    y_ref = upfirdn2d(x.contiguous(), f, up=2, padding=case["padding"], impl="ref")
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("impl", cpu_kernel_impls())
def test_float32_stylegan_shapes(impl):
    x = torch.randn(2, 16, 16, 16)
    f = setup_filter([1, 3, 3, 1])
    for kwargs in (dict(up=2, padding=(2, 1, 2, 1), gain=4), dict(down=2, padding=1)):
        torch.testing.assert_close(upfirdn2d(x, f, **kwargs, impl=impl),
                                   upfirdn2d(x, f, **kwargs, impl="ref"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("case", STYLEGAN_CASES[:3], ids=_case_id)
def test_gradcheck_and_gradgradcheck(impl, case):
    case = dict(case, shape=(1, 2, 4, 5))
    x, f = _inputs(case)
    x.requires_grad_(True)

    def fn(inp):
        return upfirdn2d(inp, f, **_args(case), impl=impl)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_reference_differentiates_filter():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    f = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: upfirdn2d(x, w, up=2, padding=1, impl="ref"), (f,))


def test_filter_gradient_selects_reference_under_auto():
    x = torch.randn(1, 2, 5, 5)
    f = torch.rand(3, 3, requires_grad=True)
    y = upfirdn2d(x, f, impl="auto")
    (gf,) = torch.autograd.grad(y.sum(), f)
    assert gf.abs().sum() > 0
    with pytest.raises(BackendUnavailable, match="requires grad"):
        upfirdn2d(x, f, impl="cpp")


def test_auto_picks_cpp_on_cpu_float32_and_ref_for_half():
    pick = lambda t: _backend.select_impl("upfirdn2d", "auto", t.device,  # noqa: E731
                                          lambda name: None if name == "ref" or t.dtype in (
                                              torch.float32, torch.float64) else "dtype")
    assert pick(torch.zeros(1)) == "cpp"
    assert pick(torch.zeros(1, dtype=torch.float16)) == "ref"
    x = torch.randn(1, 1, 4, 4, dtype=torch.float16)
    y = upfirdn2d(x, setup_filter([1, 1]), up=2, padding=(1, 0), impl="auto")
    assert y.dtype == torch.float16


def test_explicit_unavailable_backend_says_why_and_how():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(BackendUnavailable, match="CUDA tensors"):
        upfirdn2d(x, None, impl="cuda")
    with pytest.raises(BackendUnavailable, match="dtype torch.float16"):
        upfirdn2d(x.half(), None, impl="cpp")


def test_missing_extension_message(monkeypatch):
    monkeypatch.setitem(_library._state, "extension", None)
    monkeypatch.setitem(_library._state, "extension_error", "ModuleNotFoundError: genmix._C")
    with pytest.raises(BackendUnavailable, match="pip install --no-build-isolation"):
        upfirdn2d(torch.randn(1, 1, 4, 4), None, impl="cpp")
    # auto still works through the reference
    assert upfirdn2d(torch.randn(1, 1, 4, 4), None, impl="auto").shape == (1, 1, 4, 4)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(x=torch.randn(3, 4, 4)), ValueError, "x must have 4 dimensions"),
        (dict(x=torch.zeros(1, 1, 4, 4, dtype=torch.int64)), TypeError, "x must be a floating-point"),
        (dict(x=[[1.0]]), TypeError, "x must be a torch.Tensor"),
        (dict(up=0), ValueError, "up must be >= 1"),
        (dict(down=(1, -1)), ValueError, "down must be >= 1"),
        (dict(up=1.5), TypeError, "up must be an int"),
        (dict(padding=(1, 2, 3)), ValueError, "padding must be"),
        (dict(f=torch.ones(1, 1, 1)), ValueError, "f must have 1 or 2 dimensions"),
        (dict(f=torch.ones(0)), ValueError, "must not be empty"),
        (dict(f=torch.ones(2, 2, device="meta")), ValueError, "f is on meta"),
        (dict(padding=-3), ValueError, "output would be empty"),
        (dict(impl="fast"), ValueError, "impl must be"),
    ],
)
def test_bad_arguments(kwargs, exc, pattern):
    args = dict(x=torch.randn(1, 1, 4, 4), f=torch.ones(2, 2))
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        upfirdn2d(**args)


def test_setup_filter_conventions():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    assert math.isclose(f.sum().item(), 1.0, rel_tol=1e-6)
    assert setup_filter([1] * 8).shape == (8,)  # long filters stay separable
    assert setup_filter([1, 3, 3, 1], separable=True).shape == (4,)
    assert math.isclose(setup_filter([1, 3, 3, 1], gain=4).sum().item(), 4.0, rel_tol=1e-6)
    assert torch.equal(setup_filter([1, 2], normalize=False, flip_filter=True), torch.tensor([[4.0, 2], [2, 1]]))
    assert setup_filter(None).shape == (1, 1)  # identity
    with pytest.raises(ValueError, match="sum to 0"):
        setup_filter([1, -1])
    with pytest.raises(ValueError, match="negative gain"):
        setup_filter([1] * 8, gain=-1)


def test_reference_semantics_on_a_hand_example():
    # up=2 of [a, b] with the filter [1, 1] (no flip matters) and padding (1, 0) repeats samples.
    x = torch.tensor([[[[1.0, 2.0]]]])
    y = upfirdn2d(x, torch.tensor([[1.0, 1.0]]), up=(2, 1), padding=(1, 0, 0, 0), impl="ref")
    assert torch.equal(y, torch.tensor([[[[1.0, 1.0, 2.0, 2.0]]]]))
    # down=2 keeps every other sample; negative padding crops the first one.
    x = torch.arange(6.0).reshape(1, 1, 1, 6)
    y = upfirdn2d(x, None, down=(2, 1), padding=(-1, 0, 0, 0), impl="ref")
    assert torch.equal(y, torch.tensor([[[[1.0, 3.0, 5.0]]]]))
    # Without flip_filter the filter is convolved (flipped), with it correlated.
    x = torch.tensor([[[[0.0, 1.0, 0.0]]]])
    f = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(upfirdn2d(x, f, padding=(1, 1, 0, 0), impl="ref")[0, 0, 0], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(upfirdn2d(x, f, padding=(1, 1, 0, 0), flip_filter=True, impl="ref")[0, 0, 0],
                       torch.tensor([3.0, 2.0, 1.0]))


# ---------------------------------------------------------------- GPU (skipped without one)

GPU_IMPLS = ["cuda", "triton"]


@pytest.mark.cuda
@pytest.mark.parametrize("impl", GPU_IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("case", STYLEGAN_CASES + CASES[:20], ids=_case_id)
def test_gpu_matches_reference(impl, dtype, case):
    x, f = _inputs(case, dtype=dtype, device="cuda")
    x.requires_grad_(True)
    y = upfirdn2d(x, f, **_args(case), impl=impl)
    y_ref = upfirdn2d(x.double(), f, **_args(case), impl="ref")
    tol = _tolerance(dtype) * max(1.0, case["gain"]) * 4
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)
    dy = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, dy)
    (gx_ref,) = torch.autograd.grad(upfirdn2d(x.double(), f, **_args(case), impl="ref"), x, dy.double())
    torch.testing.assert_close(gx.double(), gx_ref.double(), rtol=tol, atol=tol)


@pytest.mark.cuda
@pytest.mark.parametrize("impl", GPU_IMPLS)
def test_gpu_large_planes_and_channels_last(impl):
    f = setup_filter([1, 3, 3, 1], device="cuda")
    x = torch.randn(4, 64, 33, 47, device="cuda").contiguous(memory_format=torch.channels_last)
    for kwargs in (dict(up=2, padding=(2, 1, 2, 1), gain=4), dict(down=2, padding=1)):
        y = upfirdn2d(x, f, **kwargs, impl=impl)
        torch.testing.assert_close(y, upfirdn2d(x, f, **kwargs, impl="ref"), rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("impl", GPU_IMPLS)
def test_gpu_gradgradcheck(impl):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    f = setup_filter([1, 3, 3, 1], device="cuda")
    fn = lambda t: upfirdn2d(t, f, up=2, padding=(2, 1, 2, 1), gain=4, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ------------------------------------------- C++ separable channels-last path, every ISA

ISAS = ["baseline", "avx2", "avx512"]


@pytest.fixture(params=ISAS)
def cpu_isa(request):
    """Runs the test with the C++ kernels compiled for one instruction set (skipped where the
    CPU lacks it), then restores the best one."""
    ext = _backend.extension()
    if ext.set_cpu_isa(request.param) != request.param:
        ext.set_cpu_isa("best")
        pytest.skip(f"this CPU has no {request.param}")
    yield request.param
    ext.set_cpu_isa("best")


def _separable_case(rng):
    while True:
        taps_y, taps_x = rng.randint(1, 6), rng.randint(1, 6)
        up = (rng.randint(1, 3), rng.randint(1, 3))
        down = (rng.randint(1, 3), rng.randint(1, 3))
        h, w = rng.randint(1, 11), rng.randint(1, 11)
        pad = tuple(rng.randint(-2, 4) for _ in range(4))
        out_h = (h * up[1] + pad[2] + pad[3] - taps_y) // down[1] + 1
        out_w = (w * up[0] + pad[0] + pad[1] - taps_x) // down[0] + 1
        if out_h >= 1 and out_w >= 1:
            return dict(shape=(rng.randint(1, 3), rng.choice([8, 9, 16, 17, 33]), h, w), up=up,
                        down=down, padding=pad, taps=(taps_y, taps_x), flip=rng.random() < 0.5,
                        gain=rng.choice([1.0, 4.0, 0.5]))


SEP_RNG = random.Random(77)
SEPARABLE_CASES = [
    # StyleGAN2's: the FIR after a transposed convolution, before a strided one, the skip path.
    dict(shape=(2, 32, 9, 9), up=(1, 1), down=(1, 1), padding=(-1, -1, -1, -1), taps=(4, 4), flip=False, gain=4.0),
    dict(shape=(2, 16, 8, 8), up=(1, 1), down=(1, 1), padding=(2, 2, 2, 2), taps=(4, 4), flip=False, gain=1.0),
    dict(shape=(2, 16, 8, 8), up=(1, 1), down=(2, 2), padding=(1, 1, 1, 1), taps=(4, 4), flip=False, gain=1.0),
    dict(shape=(2, 16, 5, 7), up=(2, 2), down=(1, 1), padding=(2, 1, 2, 1), taps=(4, 4), flip=True, gain=4.0),
] + [_separable_case(SEP_RNG) for _ in range(30)]


def _separable_filter(case, gen):
    fy = torch.rand(case["taps"][0], generator=gen, dtype=torch.float64) + 0.1
    fx = torch.rand(case["taps"][1], generator=gen, dtype=torch.float64) - 0.3
    return torch.outer(fy, fx)


def _channels_inner(shape, dtype, layout, gen):
    """Channels at stride 1: plain channels_last, or pixels with gaps (a slice of a wider
    NHWC tensor, so neither the input rows nor the output are dense channels-last)."""
    n, c, h, w = shape
    if layout == "channels_last":
        return torch.randn(shape, dtype=dtype, generator=gen).contiguous(memory_format=torch.channels_last)
    wide = torch.randn(n, h, w + 3, c + 2, dtype=dtype, generator=gen)
    return wide[:, :, 1:w + 1, 1:c + 1].permute(0, 3, 1, 2)


@pytest.mark.parametrize("layout", ["channels_last", "gapped"])
@pytest.mark.parametrize("case", SEPARABLE_CASES, ids=lambda c: _case_id(dict(c, fshape=c["taps"])))
def test_separable_channels_last_matches_reference(cpu_isa, case, layout):
    gen = torch.Generator().manual_seed(3)
    f = _separable_filter(case, gen)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        x = _channels_inner(case["shape"], dtype, layout, gen).requires_grad_(True)
        kw = dict(up=case["up"], down=case["down"], padding=case["padding"], flip_filter=case["flip"],
                  gain=case["gain"])
        y = upfirdn2d(x, f.float(), **kw, impl="cpp")
        y_ref = upfirdn2d(x, f.float(), **kw, impl="ref")
        torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol)
        if layout == "channels_last" and min(y.shape[1:]) > 1:
            assert y.is_contiguous(memory_format=torch.channels_last)
        dy = torch.randn(y.shape, dtype=dtype, generator=gen)
        (gx,) = torch.autograd.grad(y, x, dy)
        (gx_ref,) = torch.autograd.grad(y_ref, x, dy)
        torch.testing.assert_close(gx, gx_ref, rtol=tol, atol=tol)


def test_non_separable_filter_on_channels_last_still_matches(cpu_isa):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 16, 7, 6, dtype=torch.float64, generator=gen).contiguous(memory_format=torch.channels_last)
    f = torch.rand(3, 4, generator=gen)
    f[0, 0] += 1.0  # rank 2
    for kw in (dict(up=2, padding=(2, 1, 2, 1)), dict(down=2, padding=1), dict(padding=(1, 2, 0, 1))):
        torch.testing.assert_close(upfirdn2d(x, f, **kw, impl="cpp"), upfirdn2d(x, f, **kw, impl="ref"),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw", [dict(up=2, padding=(2, 1, 2, 1), gain=4.0), dict(down=2, padding=(1, 1, 1, 1)),
                                dict(padding=(2, 2, 2, 2))], ids=["up", "down", "pad"])
def test_separable_channels_last_gradcheck_and_gradgradcheck(kw):
    x = torch.randn(1, 8, 4, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    f = setup_filter([1, 3, 3, 1])

    def fn(inp):
        return upfirdn2d(inp, f, **kw, impl="cpp")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_cpu_isa_can_be_lowered_and_restored():
    ext = _backend.extension()
    best = ext.build_info()["cpu_isa_supported"]
    assert ext.set_cpu_isa("baseline") == "baseline"
    assert ext.cpu_isa() == "baseline"
    assert ext.set_cpu_isa("best") == best
    with pytest.raises(ValueError, match="unknown instruction set"):
        ext.set_cpu_isa("sse9")
