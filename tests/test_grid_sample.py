"""genmix.ops.grid_sample: agreement with torch's grid_sample (values, first and second
derivatives), gradcheck/gradgradcheck, opcheck of both custom ops, torch.compile, argument
checks, and that the ADA pipe's R1 double backward never asks torch for the derivative of
aten::grid_sampler_2d_backward, which CUDA does not have."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from genmix.ops.grid_sample import grid_sample

# The module itself (genmix.ops exports the function under the same name).
grid_sample_module = importlib.import_module("genmix.ops.grid_sample")

MODES = ["zeros", "border", "reflection"]


def sample_args(n=2, c=3, h=5, w=6, h_out=4, w_out=7, dtype=torch.float32, reach=1.3):
    """An input and a grid that also reaches outside [-1, 1], so every padding mode matters."""
    x = torch.randn(n, c, h, w, dtype=dtype)
    grid = (torch.rand(n, h_out, w_out, 2, dtype=dtype) * 2 - 1) * reach
    return x, grid


class OpRecorder(TorchDispatchMode):
    """Records the ops that reach the dispatcher below autograd (the top-level calls only:
    what an op's kernel calls inside itself is not seen)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def autograd_nodes(t):
    """Names of every node in the autograd graph that produces `t`."""
    seen, names, stack = set(), [], [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.append(fn.name())
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return names


# ------------------------------------------------------------------------------------ values

@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", MODES)
def test_forward_matches_torch(padding_mode, align_corners):
    x, grid = sample_args()
    got = grid_sample(x, grid, padding_mode=padding_mode, align_corners=align_corners)
    want = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
    assert got.shape == (2, 3, 4, 7)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def _torch_cpu_grid_sample_is_twice_differentiable() -> bool:
    x = torch.randn(1, 1, 3, 3, requires_grad=True)
    grid = torch.rand(1, 2, 2, 2) * 2 - 1
    (g,) = torch.autograd.grad(F.grid_sample(x, grid, align_corners=False).square().sum(), x, create_graph=True)
    try:
        torch.autograd.grad(g.sum(), x, allow_unused=True)
    except RuntimeError:
        return False
    return True


def test_first_and_second_derivatives_match_torch_cpu():
    # R1 in miniature: a parameter upstream of the sampled image, a nonlinear "discriminator"
    # with its own weight after it, the penalty ||d D / d image||^2, and its gradient with
    # respect to both. torch's CPU grid_sample is twice differentiable, so it is the reference.
    x, grid = sample_args(n=3, c=2, h=8, w=8, h_out=8, w_out=8)
    base = torch.randn(3, 2, 1, 1)
    if not _torch_cpu_grid_sample_is_twice_differentiable():
        pytest.skip(f"torch {torch.__version__}'s own CPU grid_sample has no second derivative to compare with "
                    "(gradgradcheck below still checks genmix's)")
    for padding_mode in MODES:
        results = []
        for sample in (grid_sample, F.grid_sample):
            upstream = torch.full([2], 0.7, requires_grad=True)
            weight = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_()
            image = x * upstream[:, None, None] + base
            out = sample(image, grid, padding_mode=padding_mode, align_corners=False)
            logits = F.softplus(out * weight).sum(dim=[1, 2, 3])
            (grad_image,) = torch.autograd.grad(logits.sum(), image, create_graph=True)
            penalty = grad_image.square().sum()
            penalty.backward()
            results.append((out, grad_image, penalty, upstream.grad, weight.grad))
        for got, want in zip(*results):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", MODES)
def test_gradcheck_and_gradgradcheck(padding_mode, align_corners):
    x, grid = sample_args(n=1, c=2, h=4, w=5, h_out=3, w_out=4, dtype=torch.float64)
    x.requires_grad_(True)

    def fn(inp):
        return grid_sample(inp, grid, padding_mode=padding_mode, align_corners=align_corners)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_backward_op_gradcheck_through_grad_output():
    # The backward op's own derivative with respect to grad_output is the forward sampling.
    x, grid = sample_args(n=1, c=2, h=4, w=5, h_out=3, w_out=4, dtype=torch.float64)
    grad_out = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)

    def fn(g):
        return torch.ops.genmix.grid_sample_2d_backward(g, x, grid, 2, False)

    assert torch.autograd.gradcheck(fn, (grad_out,))
    assert torch.autograd.gradgradcheck(fn, (grad_out,))


# ------------------------------------------------------------------------ custom-op machinery

def test_opcheck_forward_op():
    x, grid = sample_args()
    x.requires_grad_(True)
    for padding_mode, align_corners in ((0, False), (2, True)):
        torch.library.opcheck(torch.ops.genmix.grid_sample_2d, (x, grid, padding_mode, align_corners))


def test_opcheck_backward_op():
    x, grid = sample_args()
    grad_out = torch.randn(2, 3, 4, 7, requires_grad=True)
    for padding_mode, align_corners in ((1, True), (2, False)):
        torch.library.opcheck(torch.ops.genmix.grid_sample_2d_backward,
                              (grad_out, x, grid, padding_mode, align_corners))


def test_compile_fullgraph_matches_eager():
    if not hasattr(torch, "compile") or not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not available here")
    x, grid = sample_args()
    x.requires_grad_(True)

    def fn(inp, g):
        return grid_sample(inp * 2, g, padding_mode="reflection").square()

    # aot_eager: dynamo (fullgraph) and AOT autograd over the fake implementations, without
    # the minute of C++ code generation that inductor would add to the test.
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got = compiled(x, grid)
    want = fn(x, grid)
    torch.testing.assert_close(got, want)
    (got_grad,) = torch.autograd.grad(got.sum(), x)
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(got_grad, want_grad)


def test_reimport_and_reload_do_not_re_register():
    module = importlib.reload(grid_sample_module)
    importlib.import_module("genmix.ops.grid_sample")
    x, grid = sample_args()
    torch.testing.assert_close(module.grid_sample(x, grid), F.grid_sample(x, grid, align_corners=False))


def test_bad_arguments_raise():
    x, grid = sample_args()
    with pytest.raises(ValueError, match="input"):
        grid_sample(x[0], grid)
    with pytest.raises(ValueError, match="grid"):
        grid_sample(x, grid[..., :1])
    with pytest.raises(ValueError, match="grid"):
        grid_sample(x, grid[:1])
    with pytest.raises(TypeError, match="input"):
        grid_sample(x.long(), grid)
    with pytest.raises(TypeError, match="grid"):
        grid_sample(x, grid.double())
    with pytest.raises(TypeError, match="input"):
        grid_sample(x.numpy(), grid)
    with pytest.raises(ValueError, match="padding_mode"):
        grid_sample(x, grid, padding_mode="wrap")
    with pytest.raises(TypeError, match="padding_mode"):
        grid_sample(x, grid, padding_mode=2)
    with pytest.raises(TypeError, match="align_corners"):
        grid_sample(x, grid, align_corners=1)
    with pytest.raises(ValueError, match="grid.*not supported.*torch.nn.functional.grid_sample"):
        grid_sample(x, grid.requires_grad_(True))
    with pytest.raises(ValueError, match="device"):
        grid_sample(x, grid.detach().to("meta"))


def test_grid_gradient_through_the_op_is_refused():
    x, grid = sample_args()
    x.requires_grad_(True)
    grid.requires_grad_(True)
    out = torch.ops.genmix.grid_sample_2d(x, grid, 0, False)
    with pytest.raises(RuntimeError, match="grid"):
        out.sum().backward()


# ------------------------------------------------------------------------------ ADA and R1

def ada_trainer():
    from test_gan_training import make_trainer

    trainer = make_trainer(aug="ada")
    trainer.augment.p.fill_(1.0)
    return trainer


def test_r1_through_ada_never_differentiates_aten_grid_sampler_backward():
    # On CUDA, aten::grid_sampler_2d_backward has no derivative, so R1 through F.grid_sample
    # fails there; on the CPU it silently works. What fails is autograd recording that op as a
    # differentiable node (GridSampler2DBackwardBackward0) during the create_graph backward, so
    # its absence here, on the CPU, means the CUDA run takes the same, supported, path.
    trainer = ada_trainer()
    real, real_c = trainer._real_batch()
    real = real.detach().requires_grad_(True)
    with OpRecorder() as rec:
        logits = trainer._run_D(real, real_c)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        grads.square().sum().backward()
    nodes = autograd_nodes(grads)
    assert not [n for n in nodes if n.startswith("GridSampler2D")], nodes
    assert any("grid_sample_2d_backward" in n for n in nodes), nodes
    assert "genmix.grid_sample_2d.default" in rec.ops
    assert "genmix.grid_sample_2d_backward.default" in rec.ops
    assert not [op for op in rec.ops if op.startswith("aten.grid_sampler")]


def test_gan_step_with_augment_and_r1_uses_the_op():
    trainer = ada_trainer()
    assert trainer.step_index % trainer.cfg.r1_interval == 0
    with OpRecorder() as rec:
        stats = trainer.step()
    assert "r1_penalty" in stats and torch.isfinite(torch.as_tensor(stats["r1_penalty"]))
    # G main, D main (fakes and reals), R1: every augmented pass samples with the genmix op, and
    # the R1 penalty's backward differentiates the backward op (its derivative is the forward).
    assert rec.ops.count("genmix.grid_sample_2d.default") >= 4
    assert rec.ops.count("genmix.grid_sample_2d_backward.default") >= 3
    assert not [op for op in rec.ops if op.startswith("aten.grid_sampler")]


@pytest.mark.cuda
def test_r1_style_double_backward_on_cuda_matches_cpu():
    # The failure this op exists for: torch's CUDA grid_sample cannot be differentiated twice.
    def penalty_grads(device):
        x, grid = sample_args(n=2, c=2, h=8, w=8, h_out=8, w_out=8)
        weight = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(1))
        x, grid = x.to(device).requires_grad_(True), grid.to(device)
        weight = weight.to(device).requires_grad_(True)
        out = grid_sample(x, grid, padding_mode="reflection")
        (grad_x,) = torch.autograd.grad(F.softplus(out * weight).sum(), x, create_graph=True)
        grad_x.square().sum().backward()
        return x.grad.cpu(), weight.grad.cpu()

    for got, want in zip(penalty_grads("cuda"), penalty_grads("cpu")):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
