"""Class-conditional StyleGAN2 modules: shapes, soft labels, gradients, backend agreement,
truncation, input validation and the second-order (R1) path."""

import copy

import pytest
import torch

from genmix.models.stylegan2 import Discriminator, Generator, MappingNetwork, set_impl

Z_DIM, C_DIM, W_DIM = 16, 5, 32
SMALL = dict(channel_base=1024, channel_max=64)


def make_g(resolution=16, channels=3, impl="auto"):
    return Generator(Z_DIM, C_DIM, W_DIM, resolution, channels, synthesis_kwargs=SMALL,
                     mapping_kwargs=dict(num_layers=2), impl=impl)


def make_d(resolution=16, channels=3, impl="auto"):
    return Discriminator(C_DIM, resolution, channels, **SMALL, impl=impl)


def one_hot(n, k=C_DIM):
    return torch.nn.functional.one_hot(torch.arange(n) % k, k).float()


def soft_labels(n, k=C_DIM):
    return torch.softmax(torch.randn(n, k), dim=1)


@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(resolution, channels):
    g, d = make_g(resolution, channels), make_d(resolution, channels)
    z = torch.randn(4, Z_DIM)
    img = g(z, one_hot(4))
    assert img.shape == (4, channels, resolution, resolution)
    assert torch.isfinite(img).all()
    score = d(img, one_hot(4))
    assert score.shape == (4, 1)
    assert torch.isfinite(score).all()


def test_soft_labels_accepted_and_matter():
    g, d = make_g().eval(), make_d().eval()
    z = torch.randn(3, Z_DIM)
    c_soft = soft_labels(3)
    img = g(z, c_soft, noise_mode="const")
    assert img.shape == (3, 3, 16, 16)
    # Different labels give different images and scores: the label is actually used.
    img_hard = g(z, one_hot(3), noise_mode="const")
    assert not torch.allclose(img, img_hard)
    assert not torch.allclose(d(img, c_soft), d(img, one_hot(3)))


def _check_grads(module):
    for name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"


@pytest.mark.parametrize("train", [True, False])
def test_gradients_reach_every_parameter(train):
    g, d = make_g().train(train), make_d().train(train)
    c = soft_labels(4)
    img = g(torch.randn(4, Z_DIM), c, noise_mode="random")
    d(img, c).sum().backward()
    _check_grads(g)
    _check_grads(d)


@pytest.mark.parametrize("train", [False, True])
def test_ref_matches_auto(train):
    g_auto = make_g(impl="auto").train(train)
    d_auto = make_d(impl="auto").train(train)
    g_ref = set_impl(copy.deepcopy(g_auto), "ref")
    d_ref = set_impl(copy.deepcopy(d_auto), "ref")
    z, c = torch.randn(4, Z_DIM), soft_labels(4)
    img_auto = g_auto(z, c, noise_mode="const")
    img_ref = g_ref(z, c, noise_mode="const")
    torch.testing.assert_close(img_auto, img_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(d_auto(img_ref, c), d_ref(img_ref, c), atol=1e-4, rtol=1e-4)
    if train:
        torch.testing.assert_close(g_auto.mapping.w_avg, g_ref.mapping.w_avg, atol=1e-5, rtol=1e-5)


def test_set_impl_reaches_every_layer():
    g = set_impl(make_g(), "ref")
    impls = {m.impl for m in g.modules() if hasattr(m, "impl")}
    assert impls == {"ref"}


def test_truncation_psi_zero_gives_w_avg():
    mapping = MappingNetwork(Z_DIM, C_DIM, W_DIM, num_ws=6, num_layers=2)
    mapping.train()
    for _ in range(3):  # move w_avg away from its zero initialisation
        mapping(torch.randn(8, Z_DIM), soft_labels(8))
    assert mapping.w_avg.abs().sum() > 0
    mapping.eval()
    ws = mapping(torch.randn(5, Z_DIM), soft_labels(5), truncation_psi=0, truncation_center="global")
    assert ws.shape == (5, 6, W_DIM)
    torch.testing.assert_close(ws, mapping.w_avg.expand(5, 6, W_DIM))
    # A cutoff truncates only the first layers.
    ws = mapping(torch.randn(5, Z_DIM), soft_labels(5), truncation_psi=0, truncation_cutoff=2,
                 truncation_center="global")
    torch.testing.assert_close(ws[:, :2], mapping.w_avg.expand(5, 2, W_DIM))
    assert not torch.allclose(ws[:, 2:], mapping.w_avg.expand(5, 4, W_DIM))


def test_w_avg_only_updates_in_training():
    mapping = MappingNetwork(Z_DIM, C_DIM, W_DIM, num_ws=2, num_layers=2).eval()
    mapping(torch.randn(4, Z_DIM), one_hot(4))
    assert torch.equal(mapping.w_avg, torch.zeros(W_DIM))
    mapping.train()(torch.randn(4, Z_DIM), one_hot(4))
    assert not torch.equal(mapping.w_avg, torch.zeros(W_DIM))


def test_eval_const_noise_is_deterministic():
    g = make_g().eval()
    z, c = torch.randn(2, Z_DIM), one_hot(2)
    assert torch.equal(g(z, c, noise_mode="const"), g(z, c, noise_mode="const"))


@pytest.mark.parametrize("z, c, match", [
    (torch.randn(4, Z_DIM + 1), one_hot(4), "z"),
    (torch.randn(4), one_hot(4), "z"),
    (torch.randn(4, Z_DIM), one_hot(4, C_DIM + 1), "c"),
    (torch.randn(4, Z_DIM), one_hot(3), "c"),
    (torch.randn(4, Z_DIM), torch.arange(4), "c"),
])
def test_generator_rejects_bad_inputs(z, c, match):
    with pytest.raises(ValueError, match=match):
        make_g()(z, c)


@pytest.mark.parametrize("img, c, match", [
    (torch.randn(2, 3, 32, 32), one_hot(2), "img"),
    (torch.randn(2, 1, 16, 16), one_hot(2), "img"),
    (torch.randn(3, 16, 16), one_hot(3), "img"),
    (torch.randn(2, 3, 16, 16), one_hot(2, C_DIM - 1), "c"),
    (torch.randn(2, 3, 16, 16), one_hot(3), "c"),
])
def test_discriminator_rejects_bad_inputs(img, c, match):
    with pytest.raises(ValueError, match=match):
        make_d()(img, c)


@pytest.mark.parametrize("resolution", [4, 12, 0])
def test_bad_resolution_rejected(resolution):
    with pytest.raises(ValueError, match="img_resolution"):
        make_g(resolution)
    with pytest.raises(ValueError, match="img_resolution"):
        make_d(resolution)


def test_unconditional_variants():
    g = Generator(Z_DIM, 0, W_DIM, 16, 3, synthesis_kwargs=SMALL, mapping_kwargs=dict(num_layers=2))
    d = Discriminator(0, 16, 3, **SMALL)
    img = g(torch.randn(2, Z_DIM), None)
    assert d(img, None).shape == (2, 1)


def _r1_grads(d, real, c):
    """Parameter gradients of the R1 penalty; None (parameter not on the second-order path)
    reads as zero."""
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x, c).sum(), x, create_graph=True)
    grad.square().sum(dim=[1, 2, 3]).mean().backward()
    return {n: torch.zeros_like(p) if p.grad is None else p.grad for n, p in d.named_parameters()}


@pytest.mark.parametrize("impl", ["auto", "ref"])
def test_r1_penalty_second_order(impl):
    d = make_d(impl=impl)
    grads = _r1_grads(d, torch.randn(4, 3, 16, 16), soft_labels(4))
    for name, g in grads.items():
        assert torch.isfinite(g).all(), f"non-finite R1 gradient for {name}"
        # Every weight shapes the input gradient, so every weight must receive an R1 gradient.
        # Biases after the minibatch-stddev layer only feed piecewise-linear activations, whose
        # second derivative vanishes, so their R1 gradient is legitimately zero.
        if not name.endswith("bias"):
            assert g.abs().sum() > 0, f"zero R1 gradient for {name}"


def test_r1_penalty_auto_matches_ref():
    d_auto = make_d(impl="auto")
    d_ref = set_impl(copy.deepcopy(d_auto), "ref")
    real, c = torch.randn(4, 3, 16, 16), soft_labels(4)
    grads_auto, grads_ref = _r1_grads(d_auto, real, c), _r1_grads(d_ref, real, c)
    for name in grads_auto:
        torch.testing.assert_close(grads_auto[name], grads_ref[name], atol=1e-4, rtol=1e-3, msg=name)


def test_per_class_truncation_centres():
    mapping = MappingNetwork(Z_DIM, C_DIM, W_DIM, num_ws=3, num_layers=2, w_avg_beta=0.0)
    mapping.train()
    # Only classes 0 and 1 appear: their centres become the batch's per-class means, the rest
    # stay at zero.
    c = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 0, 1]), C_DIM).float()
    z = torch.randn(6, Z_DIM)
    w = mapping(z, c)[:, 0]
    torch.testing.assert_close(mapping.w_avg_class[0], w[0::2].mean(0))
    torch.testing.assert_close(mapping.w_avg_class[1], w[1::2].mean(0))
    assert torch.equal(mapping.w_avg_class[2:], torch.zeros(C_DIM - 2, W_DIM))
    mapping.eval()
    ws = mapping(torch.randn(2, Z_DIM), c[:2], truncation_psi=0)
    torch.testing.assert_close(ws[0], mapping.w_avg_class[0].expand(3, W_DIM))
    torch.testing.assert_close(ws[1], mapping.w_avg_class[1].expand(3, W_DIM))
    # A 50/50 soft label truncates to the midpoint of the two class centres.
    half = torch.zeros(1, C_DIM)
    half[0, :2] = 0.5
    ws = mapping(torch.randn(1, Z_DIM), half, truncation_psi=0)
    torch.testing.assert_close(ws[0, 0], mapping.w_avg_class[:2].mean(0))
    with pytest.raises(ValueError, match="truncation_center"):
        mapping(torch.randn(1, Z_DIM), half, truncation_psi=0.5, truncation_center="median")


def test_fp16_blocks_follow_fp32(monkeypatch):
    import genmix.models.stylegan2 as sg

    kwargs = dict(SMALL, conv_clamp=256)
    g32 = Generator(Z_DIM, C_DIM, W_DIM, 32, 1, synthesis_kwargs=kwargs, mapping_kwargs=dict(num_layers=2))
    g16 = Generator(Z_DIM, C_DIM, W_DIM, 32, 1, synthesis_kwargs=dict(kwargs, num_fp16_res=2),
                    mapping_kwargs=dict(num_layers=2))
    g16.load_state_dict(g32.state_dict())
    assert [b.use_fp16 for b in g16.synthesis.blocks] == [False, False, True, True]
    d16 = Discriminator(C_DIM, 32, 1, **kwargs, num_fp16_res=2)
    z, c = torch.randn(4, Z_DIM), one_hot(4)
    ref = g32.eval()(z, c, noise_mode="const")
    monkeypatch.setattr(sg, "FP16_ON_CPU", True)
    out = g16.eval()(z, c, noise_mode="const")
    assert out.dtype == torch.float32  # the image accumulates in fp32
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)
    assert not torch.equal(out, ref)  # fp16 really ran
    score = d16(out.requires_grad_(), c)
    assert score.dtype == torch.float32 and torch.isfinite(score).all()
    score.sum().backward()
    with pytest.raises(ValueError, match="conv_clamp"):
        Generator(Z_DIM, C_DIM, W_DIM, 32, 1, synthesis_kwargs=dict(SMALL, num_fp16_res=2))


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_large_resolutions(resolution):
    tiny = dict(channel_base=512, channel_max=16)
    g = Generator(Z_DIM, C_DIM, W_DIM, resolution, 3, synthesis_kwargs=tiny, mapping_kwargs=dict(num_layers=1))
    d = Discriminator(C_DIM, resolution, 3, **tiny)
    img = g(torch.randn(2, Z_DIM), soft_labels(2))
    assert img.shape == (2, 3, resolution, resolution) and torch.isfinite(img).all()
    score = d(img, soft_labels(2))
    assert score.shape == (2, 1)
    score.sum().backward()
    assert all(p.grad is not None for p in g.parameters())  # D's score reaches every G weight


def test_auto_runs_channels_last_and_matches_ref_to_the_gradients():
    g_auto, d_auto = make_g(resolution=16, channels=3).train(), make_d(resolution=16, channels=3).train()
    g_ref, d_ref = set_impl(copy.deepcopy(g_auto), "ref"), set_impl(copy.deepcopy(d_auto), "ref")
    layouts = []
    g_auto.synthesis.blocks[-1].conv1.register_forward_hook(
        lambda module, inputs, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last)))
    z, c = torch.randn(4, Z_DIM), soft_labels(4)
    grads = []
    for g, d in ((g_auto, d_auto), (g_ref, d_ref)):
        torch.manual_seed(7)  # the same random noise inputs for both
        img = g(z, c, noise_mode="random")
        assert img.is_contiguous()  # callers get plain NCHW images whatever the blocks ran in
        d(img, c).square().sum().backward()
        grads.append({name: p.grad for name, p in list(g.named_parameters()) + list(d.named_parameters())})
    assert layouts == [True]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-4, rtol=1e-3, msg=name)


def test_checkpoint_format_does_not_depend_on_impl():
    g_auto, d_auto = make_g(), make_d()
    z, c = torch.randn(2, Z_DIM), one_hot(2)
    d_auto(g_auto(z, c), c).sum().backward()  # a step's worth of use must not change the layout
    for model, ref in ((g_auto, set_impl(copy.deepcopy(g_auto), "ref")), (d_auto, set_impl(copy.deepcopy(d_auto), "ref"))):
        state, state_ref = model.state_dict(), ref.state_dict()
        assert list(state) == list(state_ref)
        for key, value in state.items():
            assert value.shape == state_ref[key].shape and value.is_contiguous(), key
