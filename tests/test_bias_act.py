"""bias_act: every backend against the reference, to the second derivative."""

import math

import pytest
import torch

from backends import cpu_kernel_impls
from genmix.ops import ACTIVATIONS, BackendUnavailable, bias_act

ACTS = list(ACTIVATIONS)


def _inputs(shape, dim, dtype=torch.float64, device="cpu", bias=True):
    # Spread values so every branch (negative, positive, beyond clamp, softplus threshold) is hit.
    x = torch.randn(shape, dtype=dtype, device=device) * 8
    b = torch.randn(shape[dim], dtype=dtype, device=device) if bias else None
    return x, b


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 3.0])
@pytest.mark.parametrize("dim, shape", [(1, (3, 5, 4, 2)), (0, (7, 3)), (2, (2, 3, 6)), (3, (2, 2, 2, 5))])
def test_first_and_second_derivatives_match_reference(impl, act, clamp, dim, shape):
    x, b = _inputs(shape, dim)
    x.requires_grad_(True)
    b.requires_grad_(True)
    kw = dict(dim=dim, act=act, clamp=clamp)
    y = bias_act(x, b, **kw, impl=impl)
    y_ref = bias_act(x, b, **kw, impl="ref")
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    dy = torch.randn_like(y)
    g = torch.autograd.grad(y, (x, b), dy, create_graph=True)
    g_ref = torch.autograd.grad(y_ref, (x, b), dy, create_graph=True)
    for a, r in zip(g, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)
    # Second order: the R1-style gradient of a gradient norm.
    for a, r, like in zip(_grad_of_norm(g[0], (x, b)), _grad_of_norm(g_ref[0], (x, b)), (x, b)):
        a = torch.zeros_like(like) if a is None else a
        r = torch.zeros_like(like) if r is None else r
        torch.testing.assert_close(a, r, rtol=1e-8, atol=1e-8)


def _grad_of_norm(g, inputs):
    """d|g|^2/d inputs; None where g does not depend on an input (e.g. linear activations)."""
    if not g.requires_grad:
        return (None,) * len(inputs)
    return torch.autograd.grad(g.square().sum(), inputs, allow_unused=True)


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish", "elu", "softplus", "sigmoid", "selu"])
def test_gradcheck_and_gradgradcheck(impl, act):
    # Away from kinks (0 for lrelu/elu) and the clamp edge so finite differences are valid.
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = (x + 0.3 * torch.sign(x)).requires_grad_(True)
    b = (torch.rand(3, dtype=torch.float64) * 0.1).requires_grad_(True)

    def fn(inp, bias):
        return bias_act(inp, bias, act=act, clamp=50.0, impl=impl)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("layout", ["channels_last", "strided", "no_bias", "float32"])
def test_layouts_and_dtypes(impl, layout):
    x = torch.randn(2, 6, 5, 3)
    b = torch.randn(6)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x[:, :, ::2]
    elif layout == "no_bias":
        b = None
    y = bias_act(x, b, act="lrelu", clamp=1.0, impl=impl)
    torch.testing.assert_close(y, bias_act(x, b, act="lrelu", clamp=1.0, impl="ref"), rtol=1e-6, atol=1e-6)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    g = torch.autograd.grad(bias_act(x, b, act="swish", impl=impl).sum(), x)[0]
    g_ref = torch.autograd.grad(bias_act(x, b, act="swish", impl="ref").sum(), x)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)


def test_defaults_follow_the_activation():
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(bias_act(x, act="lrelu", dim=0, impl="ref"),
                               torch.tensor([-0.2, 2.0]) * math.sqrt(2))
    torch.testing.assert_close(bias_act(x, act="relu", gain=1, dim=0, impl="ref"), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(bias_act(x, act="linear", clamp=1.5, dim=0, impl="ref"),
                               torch.tensor([-1.0, 1.5]))
    torch.testing.assert_close(bias_act(x, torch.tensor([1.0, -1.0]), dim=0, impl="ref"), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("act", ACTS)
def test_derivatives_at_kinks_and_thresholds_match_torch(impl, act):
    # relu'(0) = 0, lrelu'(0) = alpha, elu''(0) = 0, softplus beyond its threshold of 20: the
    # kernels must follow torch's conventions exactly at these points, not just nearby.
    x = torch.tensor([0.0, -0.0, 20.0, -20.0, 1e-300, 0.5, -0.5], dtype=torch.float64, requires_grad=True)

    def first_and_second(name):
        g = torch.autograd.grad(bias_act(x, dim=0, act=act, impl=name).sum(), x, create_graph=True)[0]
        gg = torch.autograd.grad(g.sum(), x)[0] if g.requires_grad else torch.zeros_like(x)
        return g.detach(), gg

    for got, want in zip(first_and_second(impl), first_and_second("ref")):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(act="gelu2"), ValueError, "unknown act 'gelu2'"),
        (dict(dim=4), ValueError, "dim=4 is out of range"),
        (dict(dim=1.0), TypeError, "dim must be an int"),
        (dict(b=torch.ones(4)), ValueError, "b has 4 elements"),
        (dict(b=torch.ones(3, 1)), ValueError, "b must have 1 dimensions"),
        (dict(b=torch.ones(3, dtype=torch.int32)), TypeError, "b must be a floating-point"),
        (dict(b=torch.ones(3, device="meta")), ValueError, "b is on meta"),
        (dict(x=torch.ones(2, 3, dtype=torch.int64)), TypeError, "x must be a floating-point"),
        (dict(clamp=-1), ValueError, "clamp must be >= 0"),
        (dict(impl="cuda"), BackendUnavailable, "CUDA tensors"),
    ],
)
def test_bad_arguments(kwargs, exc, pattern):
    args = dict(x=torch.randn(2, 3, 2, 2), b=torch.ones(3))
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        bias_act(**args)


def test_half_on_cpu_goes_to_reference_under_auto():
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    assert bias_act(x, act="lrelu", impl="auto").dtype == torch.bfloat16
    with pytest.raises(BackendUnavailable, match="bfloat16"):
        bias_act(x, act="lrelu", impl="cpp")


# ---------------------------------------------------------------- GPU (skipped without one)

@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("act", ACTS)
def test_gpu_matches_reference(impl, dtype, act):
    x, b = _inputs((4, 8, 9, 7), 1, dtype=dtype, device="cuda")
    x.requires_grad_(True)
    y = bias_act(x, b, act=act, clamp=20.0, impl=impl)
    y_ref = bias_act(x.double(), b.double(), act=act, clamp=20.0, impl="ref")
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 4e-2}[dtype]
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)
    dy = torch.randn_like(y)
    gx = torch.autograd.grad(y, x, dy)[0]
    x64 = x.detach().double().requires_grad_(True)
    gx_ref = torch.autograd.grad(bias_act(x64, b.double(), act=act, clamp=20.0, impl="ref"), x64, dy.double())[0]
    torch.testing.assert_close(gx.double(), gx_ref, rtol=tol * 4, atol=tol * 4)


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["cuda", "triton"])
def test_gpu_gradgradcheck_and_channels_last(impl):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, device="cuda")
    x = (x + 0.3 * torch.sign(x)).requires_grad_(True)
    b = torch.zeros(3, dtype=torch.float64, device="cuda", requires_grad=True)
    fn = lambda t, bb: bias_act(t, bb, act="lrelu", clamp=256, impl=impl)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, b))
    xc = torch.randn(8, 64, 16, 16, device="cuda").contiguous(memory_format=torch.channels_last)
    bc = torch.randn(64, device="cuda")
    torch.testing.assert_close(bias_act(xc, bc, act="swish", impl=impl),
                               bias_act(xc, bc, act="swish", impl="ref"), rtol=1e-5, atol=1e-5)


# ---------------------------------------- C++ kernels per ISA, C++ autograd nodes, dense layer

@pytest.fixture(params=["baseline", "avx2", "avx512"])
def cpu_isa(request):
    """Runs the test with the C++ kernels compiled for one instruction set (skipped where the
    CPU lacks it), then restores the best one."""
    from genmix.ops import _backend

    ext = _backend.extension()
    if ext.set_cpu_isa(request.param) != request.param:
        ext.set_cpu_isa("best")
        pytest.skip(f"this CPU has no {request.param}")
    yield request.param
    ext.set_cpu_isa("best")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "odd"])
def test_every_isa_matches_reference_to_the_second_derivative(cpu_isa, act, layout):
    shape = {"contiguous": (3, 5, 4, 2), "channels_last": (2, 19, 3, 5), "odd": (1, 7, 5, 3)}[layout]
    x, b = _inputs(shape, 1)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "odd":
        x = x.transpose(2, 3)  # dense, in neither standard order
    x.requires_grad_(True)
    b.requires_grad_(True)
    outs = []
    for impl in ("cpp", "ref"):
        y = bias_act(x, b, act=act, clamp=3.0, impl=impl)
        g = torch.autograd.grad(y, (x, b), torch.ones_like(y) * 0.7, create_graph=True)
        gg = _grad_of_norm(g[0], (x, b))
        outs.append([y, *g] + [torch.zeros_like(t) if a is None else a for a, t in zip(gg, (x, b))])
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8)


def test_third_derivative_is_refused():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(bias_act(x, act="tanh", dim=1, impl="cpp").sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    assert gg.requires_grad  # a second derivative with create_graph is fine...
    with pytest.raises(RuntimeError, match="first and second derivatives"):
        gg.sum().backward()  # ...differentiating it once more is refused, not silently zero


def _dense_layer(x, w, b, act, impl):
    from genmix.ops.bias_act import fully_connected

    return fully_connected(x, w, b, weight_gain=0.3, bias_gain=0.7, act=act, impl=impl)


@pytest.mark.parametrize("act", ["linear", "lrelu", "tanh", "softplus"])
@pytest.mark.parametrize("bias", [True, False])
def test_fully_connected_matches_reference_to_the_second_derivative(act, bias):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 9, dtype=torch.float64, generator=gen)
    w = torch.randn(5, 9, dtype=torch.float64, generator=gen)
    b = torch.randn(5, dtype=torch.float64, generator=gen) if bias else None
    dy = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    outs = []
    for impl in ("cpp", "ref"):
        leaves = [t.clone().requires_grad_(True) for t in (x, w) + ((b,) if bias else ())]
        y = _dense_layer(leaves[0], leaves[1], leaves[2] if bias else None, act, impl)
        g = torch.autograd.grad(y, leaves, dy, create_graph=True)
        gg = torch.autograd.grad(sum(t.square().sum() for t in g), leaves, allow_unused=True)
        outs.append([y, *g] + [torch.zeros_like(t) if a is None else a for a, t in zip(gg, leaves)])
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_fully_connected_gradcheck_and_float32():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: _dense_layer(*t, "lrelu", "cpp"), (x, w, b))
    assert torch.autograd.gradgradcheck(lambda *t: _dense_layer(*t, "tanh", "cpp"), (x, w, b))
    xf, wf, bf = (t.detach().float() for t in (x, w, b))
    torch.testing.assert_close(_dense_layer(xf, wf, bf, "lrelu", "cpp"), _dense_layer(xf, wf, bf, "lrelu", "ref"))
    # Anything the fused node does not take (here bfloat16) goes through the unfused ops.
    xb = xf.bfloat16()
    torch.testing.assert_close(_dense_layer(xb, wf, bf, "lrelu", "auto"), _dense_layer(xb, wf, bf, "lrelu", "ref"))


@pytest.mark.parametrize("impl", cpu_kernel_impls())
def test_second_derivative_with_ambiguous_strides(impl):
    # One channel: channels_last strides are as valid as contiguous ones, and elementwise
    # products of such tensors may come out in either; the kernels must not care.
    x = torch.randn(2, 1, 4, 5, dtype=torch.float64).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    b = torch.randn(1, dtype=torch.float64, requires_grad=True)

    def penalty(name):
        (g,) = torch.autograd.grad(bias_act(x, b, act="tanh", impl=name).sum(), x, create_graph=True)
        return torch.autograd.grad(g.square().sum(), (x, b))

    for got, want in zip(penalty(impl), penalty("ref")):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
