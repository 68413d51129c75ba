"""The fused ops as torch.library operators: opcheck per operator and dtype, no graph breaks
under dynamo, and torch.compile(fullgraph=True) of a GAN, a diffusion and a mixing step equal
to eager (values and gradients)."""

import math

import pytest
import torch
import torch.nn.functional as F

from backends import cpu_kernel_impls
from genmix.ops import _library, bias_act, mix_batch, setup_filter, upfirdn2d

pytestmark = pytest.mark.skipif(_library.extension() is None, reason="genmix._C is not built")

LRELU = (2, 0.2, math.sqrt(2), -1.0)   # act code, alpha, gain, clamp (none)
CLAMPED_TANH = (3, 0.0, 1.0, 0.5)


def _op(name, impl):
    return _library.op(name, impl)


def _samples(name, dtype, device="cpu"):
    """(args, kwargs) lists that exercise operator `name`: grads, layouts, optional inputs."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape, grad=False):
        t = torch.randn(*shape, generator=g, dtype=dtype).to(device)
        return t.requires_grad_(grad)

    if name == "upfirdn2d":
        f = setup_filter([1, 3, 3, 1]).to(device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
        x = randn(2, 3, 5, 6, grad=True)
        xcl = randn(2, 4, 5, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        return [(x, f, [2, 2, 1, 1, 2, 1, 2, 1], False, 4.0),
                (x, f, [1, 1, 2, 2, 1, 1, 1, 1], True, 1.0),
                (xcl, f, [1, 1, 1, 1, -1, 2, 0, 1], False, 1.0)]
    if name == "bias_act":
        x, b = randn(3, 4, 5, grad=True), randn(4, grad=True)
        return [(x, b, *LRELU, 1), (x, None, *CLAMPED_TANH, 2),
                (randn(2, 4, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_(True), b, *LRELU, 1)]
    if name in ("bias_act_grad", "bias_act_grad2"):
        grad = name == "bias_act_grad"  # grad2's own derivative (a third one) raises by design
        x, b, dy = randn(3, 4, 5, grad=grad), randn(4, grad=grad), randn(3, 4, 5, grad=grad)
        return [(dy, x, b, *LRELU, 1), (dy, x, None, *CLAMPED_TANH, 1)]
    if name == "sample_dirichlet":
        conc = torch.rand(5, 3, generator=g, dtype=dtype).to(device) + 0.1
        return [(conc, 1234), (conc, -5)]
    if name == "mix_batch":
        xs = [torch.randint(0, 255, (4, 12), generator=g, dtype=torch.uint8).to(device) for _ in range(2)]
        ys = [torch.softmax(torch.randn(4, 3, generator=g), 1).to(device) for _ in range(3)]
        fx = [randn(4, 12) for _ in range(3)]
        out = 3 if dtype == torch.float64 else 2
        return [(xs, ys[:2], out, 0, 0.4, 1 / 255, 7), (fx, ys, out, 2, 0.5, 1.0, 8)]
    if name == "modulate_weights":
        return [(randn(4, 3, 9, grad=True), randn(2, 3, grad=True), True, 1e-8),
                (randn(4, 3, 1, grad=True), randn(2, 3, grad=True), False, 1e-8)]
    if name == "modulate_weights_backward":
        w, s = randn(4, 3, 9), randn(2, 3)
        _, d = _op("modulate_weights", "cpp" if device == "cpu" else "cuda")(w, s, True, 1e-8)
        return [(w, s, d, randn(2, 4, 3, 9), True, 1e-8)]
    if name == "modconv_epilogue":
        y = randn(2, 4, 3, 5, grad=True)
        return [(y, randn(2, 4, grad=True), randn(2, 1, 3, 5, grad=True), randn(4, grad=True), *LRELU),
                (y, None, randn(1, 1, 1, 5, grad=True), None, *CLAMPED_TANH),
                (randn(2, 4, 3, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True),
                 randn(2, 4), None, randn(4), *LRELU)]
    if name == "modconv_epilogue_backward":
        y = randn(2, 4, 3, 5)
        return [(y, randn(2, 4), randn(2, 1, 3, 5), randn(4), randn(2, 4, 3, 5), *LRELU, True, True, True, True),
                (y, randn(2, 4), None, None, randn(2, 4, 3, 5), *LRELU, False, True, False, False)]
    if name == "fully_connected":
        return [(randn(5, 6, grad=True), randn(4, 6, grad=True), randn(4, grad=True), 0.5, 1.0, *LRELU),
                (randn(5, 6, grad=True), randn(4, 6, grad=True), None, 0.4, 1.0, 0, 0.0, 1.0, -1.0)]
    raise AssertionError(name)


CPP_NAMES = _library.NAMES
TRITON_NAMES = [n for n in _library.TRITON_NAMES if n != "bias_act_grad2"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", CPP_NAMES)
def test_opcheck_cpp_operators(name, dtype):
    op = _op(name, "cpp")
    for args in _samples(name, dtype):
        torch.library.opcheck(op, args)


def test_kernel_operators_load_wherever_their_compiler_imports():
    # Loading them is guarded so that a broken Triton cannot break `import genmix`; this makes
    # sure the guard never hides a defect of ours (torch 2.6 once refused list[int] schemas).
    pytest.importorskip("triton")
    assert _library.triton_available(), _library.triton_error()


@pytest.mark.skipif("triton" not in cpu_kernel_impls(), reason="Triton interpreter not available")
@pytest.mark.parametrize("name", TRITON_NAMES)
def test_opcheck_triton_operators(name):
    # Schema, fake tensors and autograd registration; the AOT-dispatch check compiles the kernel,
    # which the CPU interpreter cannot (the GPU check runs the full opcheck on CUDA).
    op = _op(name, "triton")
    for args in _samples(name, torch.float32)[:1]:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["cuda", "triton"])
@pytest.mark.parametrize("name", TRITON_NAMES)
def test_opcheck_gpu_operators(name, impl):
    op = _op(name, impl)
    for args in _samples(name, torch.float32, "cuda"):
        torch.library.opcheck(op, args)


def test_third_derivative_of_bias_act_says_what_is_implemented():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = bias_act(x, act="swish", impl="cpp")
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="only the first and second derivatives"):
        torch.autograd.grad(gg.sum(), x)


# ------------------------------------------------------------------------- torch.compile

def _two_ops(x, b, f):
    return upfirdn2d(bias_act(x, b, act="lrelu"), f, up=2)


def test_dynamo_sees_no_graph_break_in_the_fused_ops():
    x, b = torch.randn(2, 3, 8, 8), torch.randn(3)
    f = setup_filter([1, 3, 3, 1])
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(_two_ops)(x, b, f)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_ops_equal_eager_with_inductor():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    f = setup_filter([1, 3, 3, 1])
    torch._dynamo.reset()
    compiled = torch.compile(_two_ops, fullgraph=True)
    got, want = compiled(x, b, f), _two_ops(x, b, f)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got.square().sum(), (x, b)),
                               torch.autograd.grad(want.square().sum(), (x, b)))


def _compare(fn, inputs, params, rtol=1e-5, atol=1e-5):
    """fn(*inputs) compiled with fullgraph (AOT autograd, eager kernels: the tracing is what is
    under test, and it stays fast on a CPU) against eager, values and gradients."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    results = []
    for run in (compiled, fn):
        out = run(*inputs)
        results.append((out.detach(),) + torch.autograd.grad(out, params, allow_unused=True))
    for got, want in zip(*results):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


def test_compiled_stylegan2_generator_and_discriminator_losses_equal_eager():
    from genmix.models.stylegan2 import Discriminator, Generator

    torch.manual_seed(0)
    G = Generator(16, 2, 16, 8, 1, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    D = Discriminator(2, 8, 1, channel_base=64, channel_max=16, mbstd_group_size=4)
    z, c = torch.randn(4, 16), F.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    real = torch.randn(4, 1, 8, 8)

    def losses(z, c, real):
        fake = G(z, c, noise_mode="const")
        loss_g = F.softplus(-D(fake, c)).mean()
        loss_d = F.softplus(D(fake.detach(), c)).mean() + F.softplus(-D(real, c)).mean()
        return loss_g + loss_d

    params = [p for p in list(G.parameters()) + list(D.parameters()) if p.requires_grad]
    _compare(losses, (z, c, real), params, rtol=1e-4, atol=1e-5)


def test_compiled_diffusion_training_loss_equals_eager():
    from genmix.models.diffusion import DiffusionUNet, EDMPrecond

    torch.manual_seed(0)
    net = EDMPrecond(DiffusionUNet(8, 1, 2, model_channels=16, channel_mult=(1, 2), num_blocks=1,
                                   attn_resolutions=(4,), dropout=0.0, label_dropout=0.0))
    x, y = torch.randn(3, 1, 8, 8), torch.softmax(torch.randn(3, 2), 1)
    sigma, noise = torch.rand(3) + 0.1, torch.randn(3, 1, 8, 8)

    def loss(x, y, sigma, noise):
        denoised = net(x + noise * sigma.reshape(-1, 1, 1, 1), sigma, y)
        return (denoised - x).square().mean()

    _compare(loss, (x, y, sigma, noise), [p for p in net.parameters() if p.requires_grad])


def test_compiled_classifier_mixing_step_equals_eager():
    from genmix.models.classifiers import build_classifier

    torch.manual_seed(0)
    model = build_classifier("small_cnn", num_classes=3, in_channels=1)
    x = torch.rand(6, 1, 16, 16)
    y = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).float()
    index = torch.randperm(6)

    def step(x, y, index):
        x_mix, y_mix, _ = mix_batch(x, y, x[index], y[index], alpha=0.4, dist="beta", generator=1234)
        return -(torch.log_softmax(model(x_mix), 1) * y_mix).sum(1).mean()

    _compare(step, (x, y, index), [p for p in model.parameters() if p.requires_grad])
