"""Conditional DCGAN baseline: shapes, one-hot and soft labels, gradients, the shared call
signatures with StyleGAN2, backend agreement and input validation."""

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F

from genmix.models.dcgan import DCGANDiscriminator, DCGANGenerator
from genmix.models.stylegan2 import Discriminator, Generator, set_impl

Z_DIM, C_DIM, BASE = 16, 4, 8


def make(resolution=16, channels=3, impl="auto", c_dim=C_DIM):
    return (DCGANGenerator(Z_DIM, c_dim, resolution, channels, base_channels=BASE, impl=impl),
            DCGANDiscriminator(c_dim, resolution, channels, base_channels=BASE, impl=impl))


def one_hot(n, k=C_DIM):
    return F.one_hot(torch.arange(n) % k, k).float()


def one_hot_of(k, n):
    return F.one_hot(torch.full((n,), k), C_DIM).float()


def soft_labels(n, k=C_DIM):
    return torch.softmax(torch.randn(n, k), dim=1)


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(resolution, channels):
    g, d = make(resolution, channels)
    assert (g.z_dim, g.c_dim, g.img_resolution, g.img_channels) == (Z_DIM, C_DIM, resolution, channels)
    assert (d.c_dim, d.img_resolution, d.img_channels) == (C_DIM, resolution, channels)
    img = g(torch.randn(4, Z_DIM), one_hot(4))
    assert img.shape == (4, channels, resolution, resolution)
    assert img.abs().max() <= 1  # tanh output
    logits = d(img, one_hot(4))
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()


def test_one_hot_and_soft_labels_both_condition():
    g, d = make()
    g.eval()
    z, c_soft = torch.randn(3, Z_DIM), soft_labels(3)
    img_soft, img_hard = g(z, c_soft), g(z, one_hot(3))
    assert not torch.allclose(img_soft, img_hard)
    assert not torch.allclose(d(img_soft, c_soft), d(img_soft, one_hot(3)))
    # Projection is linear in c: a soft label scores as the mix of its classes' scores.
    per_class = torch.cat([d(img_soft, one_hot_of(k, 3)) for k in range(C_DIM)], dim=1)
    assert torch.allclose(d(img_soft, c_soft), (per_class * c_soft).sum(1, keepdim=True), atol=1e-5)


def test_gradients_reach_every_parameter_through_d_of_g():
    g, d = make()
    c = soft_labels(4)
    logits = d(g(torch.randn(4, Z_DIM), c), c)
    F.softplus(-logits).mean().backward()  # the generator's non-saturating loss
    for module in (g, d):
        for name, p in module.named_parameters():
            assert p.grad is not None, f"no gradient for {name}"
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_r1_penalty_is_twice_differentiable():
    _, d = make(channels=1)
    img = (torch.rand(4, 1, 16, 16) * 2 - 1).requires_grad_()
    logits = d(img, one_hot(4))
    grad, = torch.autograd.grad(logits.sum(), img, create_graph=True)
    grad.square().sum().backward()
    # Biases get none: lrelu is piecewise linear, so its input gradient does not depend on them.
    for name, p in d.named_parameters():
        if "bias" not in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_call_signatures_match_stylegan2():
    g_params = list(inspect.signature(DCGANGenerator.forward).parameters)
    assert g_params == list(inspect.signature(Generator.forward).parameters)
    assert (list(inspect.signature(DCGANDiscriminator.forward).parameters)
            == list(inspect.signature(Discriminator.forward).parameters))
    g, _ = make()
    g.eval()
    z, c = torch.randn(2, Z_DIM), one_hot(2)
    out = g(z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const",
            fused_modconv=None, update_w_avg=False, truncation_center="global")
    assert torch.equal(out, g(z, c))


def test_truncation_scales_z():
    g, _ = make()
    g.eval()
    z, c = torch.randn(2, Z_DIM), one_hot(2)
    assert torch.allclose(g(z, c, truncation_psi=0.5), g(z * 0.5, c))
    assert not torch.allclose(g(z, c, truncation_psi=0.5), g(z, c))


def test_unconditional():
    g, d = make(c_dim=0)
    img = g(torch.randn(2, Z_DIM), None)
    assert d(img, None).shape == (2, 1)


@pytest.mark.parametrize("train", [False, True])
def test_ref_matches_auto(train):
    g_auto, d_auto = make(impl="auto")
    g_auto.train(train)
    d_auto.train(train)
    g_ref = set_impl(copy.deepcopy(g_auto), "ref")
    d_ref = set_impl(copy.deepcopy(d_auto), "ref")
    assert g_ref.impl == "ref" and d_ref.impl == "ref"
    z, c = torch.randn(4, Z_DIM), soft_labels(4)
    img_auto, img_ref = g_auto(z, c), g_ref(z, c)
    assert torch.allclose(img_auto, img_ref, atol=1e-5)
    assert torch.allclose(d_auto(img_auto, c), d_ref(img_auto, c), atol=1e-5)


@pytest.mark.parametrize("resolution", [8, 24, 0, 15.0, True])
def test_resolution_validation(resolution):
    with pytest.raises(ValueError, match="img_resolution"):
        DCGANGenerator(Z_DIM, C_DIM, resolution, 3)
    with pytest.raises(ValueError, match="img_resolution"):
        DCGANDiscriminator(C_DIM, resolution, 3)


def test_input_validation():
    g, d = make()
    with pytest.raises(ValueError, match="z"):
        g(torch.randn(2, Z_DIM + 1), one_hot(2))
    with pytest.raises(ValueError, match="c"):
        g(torch.randn(2, Z_DIM), one_hot(3))
    with pytest.raises(ValueError, match="c"):
        g(torch.randn(2, Z_DIM), torch.zeros(2, C_DIM, dtype=torch.long))
    with pytest.raises(ValueError, match="noise_mode"):
        g(torch.randn(2, Z_DIM), one_hot(2), noise_mode="loud")
    with pytest.raises(ValueError, match="img"):
        d(torch.zeros(2, 3, 32, 32), one_hot(2))
    with pytest.raises(ValueError, match="c"):
        d(torch.zeros(2, 3, 16, 16), None)
    with pytest.raises(TypeError, match="img_channels"):
        DCGANGenerator(Z_DIM, C_DIM, 16, 3.0)
    with pytest.raises(ValueError, match="base_channels"):
        DCGANDiscriminator(C_DIM, 16, 3, base_channels=0)


@pytest.mark.cuda
def test_cuda_matches_ref():
    g, d = make()
    g, d = g.cuda().eval(), d.cuda()
    g_ref, d_ref = set_impl(copy.deepcopy(g), "ref"), set_impl(copy.deepcopy(d), "ref")
    z, c = torch.randn(4, Z_DIM, device="cuda"), soft_labels(4).cuda()
    img = g(z, c)
    assert torch.allclose(img, g_ref(z, c), atol=1e-4)
    assert torch.allclose(d(img, c), d_ref(img, c), atol=1e-4)


def test_dcgan_runs_use_dcgans_own_adam_settings(tmp_path):
    """StyleGAN2's lr 0.0025 / beta1 0 assume equalised-lr layers; with them the phantom DCGAN
    diverged between 4 and 6 kimg. A DCGAN run takes DCGAN's Adam settings unless told otherwise."""
    import json

    import numpy as np

    from genmix.training.generator import train_generator

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 32), ("val", 8), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 16, 16), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    np.savez(tmp_path / "d.npz", **arrays)
    data = str(tmp_path / "d.npz")
    train_generator(data, tmp_path / "a", arch="dcgan", preset="cpu-tiny", progress=False, max_steps=1)
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (cfg["g_lr"], cfg["d_lr"], cfg["betas"]) == (2e-4, 2e-4, [0.5, 0.999])
    train_generator(data, tmp_path / "b", arch="dcgan", preset="cpu-tiny", progress=False, max_steps=1,
                    overrides=dict(g_lr=1e-3))
    assert json.loads((tmp_path / "b" / "config.json").read_text())["g_lr"] == 1e-3
    train_generator(data, tmp_path / "c", arch="stylegan2", preset="cpu-tiny", progress=False, max_steps=1)
    assert json.loads((tmp_path / "c" / "config.json").read_text())["g_lr"] == 0.0025
