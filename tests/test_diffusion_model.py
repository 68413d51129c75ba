"""The soft-label diffusion model: UNet, null label, EDM preconditioning and loss, Heun sampler."""

import copy
import math

import pytest
import torch
from torch import nn

from backends import cpu_kernel_impls
from genmix.models.diffusion import DiffusionUNet, EDMPrecond, edm_loss, edm_sample, edm_sigma_steps, set_impl
from genmix.ops import gemix_labels



@pytest.fixture(autouse=True)
def _one_thread():
    """These networks are small: one thread avoids OpenMP barriers stalling behind other
    processes on a shared CPU (two threads were up to 50x slower there, one thread never)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,))


def make_unet(resolution=16, channels=1, label_dim=3, seed=0, **kwargs):
    """A tiny UNet whose zero-initialised layers are given small random weights, so that every
    part of the network (and the null label) affects the output."""
    torch.manual_seed(seed)
    unet = DiffusionUNet(resolution, channels, label_dim, **{**TINY, **kwargs})
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in unet.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return unet


def one_hot(classes, num_classes=3):
    return torch.eye(num_classes)[torch.as_tensor(classes)]


# ------------------------------------------------------------------------------ shapes, gradients

@pytest.mark.parametrize("resolution, channels, channel_mult, attn", [
    (16, 1, (1, 2), (8,)),
    (32, 3, (1, 2, 2), (8,)),
    (64, 1, (1, 1, 2, 2), (8,)),
])
def test_forward_shapes(resolution, channels, channel_mult, attn):
    unet = make_unet(resolution, channels, channel_mult=channel_mult, attn_resolutions=attn).eval()
    x = torch.randn(2, channels, resolution, resolution)
    out = unet(x, torch.tensor([0.1, -1.0]), one_hot([0, 2]))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert any(type(m).__name__ == "AttentionBlock" for m in unet.modules())
    d = EDMPrecond(unet)
    assert d(x, 2.0, one_hot([0, 2])).shape == x.shape


def test_default_network_fits_the_cpu_sampling_budget():
    # 1,000 samples at 32 px with 18 Heun steps (35 evaluations) in about 2 minutes on 2 cores:
    # this network ran at about 38 GFLOP/s per core of the reference EPYC (batch 256), so it
    # must stay near 150 MFLOP per evaluation. A wider default would break the budget.
    from torch.utils.flop_counter import FlopCounterMode

    unet = DiffusionUNet(32, 1, 2).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(torch.zeros(1, 1, 32, 32), 0.0, one_hot([0], 2))
    assert counter.get_total_flops() < 170e6
    assert 0.5e6 < sum(p.numel() for p in unet.parameters()) < 1e6


def test_fresh_network_outputs_zero():
    unet = DiffusionUNet(16, 1, 3, **TINY)
    assert torch.equal(unet(torch.randn(2, 1, 16, 16), 0.0, one_hot([0, 1])), torch.zeros(2, 1, 16, 16))


def test_28px_data_must_be_padded_to_32():
    with pytest.raises(ValueError, match="img_resolution.*pad or resize"):
        DiffusionUNet(28, 1, 2, **TINY)
    unet = DiffusionUNet(32, 1, 2, **TINY)
    with pytest.raises(ValueError, match=r"x must have shape.*pad or resize 28-px images to 32 px"):
        unet(torch.zeros(1, 1, 28, 28), 0.0, one_hot([0], 2))
    assert unet(torch.nn.functional.pad(torch.zeros(1, 1, 28, 28), [2, 2, 2, 2]), 0.0,
                one_hot([0], 2)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_parameter_gets_a_gradient_from_edm_loss(channels):
    unet = make_unet(16, channels, label_dropout=0.5)
    denoiser = EDMPrecond(unet).train()
    g = torch.Generator().manual_seed(3)
    images = torch.rand(8, channels, 16, 16) * 2 - 1
    loss = edm_loss(denoiser, images, one_hot([0, 1, 2, 0, 1, 2, 0, 1]), generator=g)
    assert loss.shape == (8,) and torch.isfinite(loss).all() and (loss > 0).all()
    loss.mean().backward()
    for name, p in denoiser.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets a zero gradient"


# --------------------------------------------------------------------------------- the null label

def test_null_label_ignores_c_and_differs_from_conditional():
    unet = make_unet().eval()
    x = torch.randn(3, 1, 16, 16)
    cond = unet(x, 0.3, one_hot([0, 1, 2]))
    uncond_a = unet(x, 0.3, one_hot([0, 1, 2]), force_uncond=True)
    uncond_b = unet(x, 0.3, torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [5.0, -2.0, 0.0]]), force_uncond=True)
    assert torch.equal(uncond_a, uncond_b)
    assert (cond - uncond_a).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    # A per-sample mask drops exactly the marked samples.
    mixed = unet(x, 0.3, one_hot([0, 1, 2]), force_uncond=torch.tensor([True, False, True]))
    torch.testing.assert_close(mixed[[0, 2]], uncond_a[[0, 2]])
    torch.testing.assert_close(mixed[1], cond[1])
    # force_uncond=False in training mode means "no dropout at all".
    unet.train()
    torch.testing.assert_close(unet(x, 0.3, one_hot([0, 1, 2]), force_uncond=False), cond)


def test_label_dropout_one_in_training_is_force_uncond():
    unet = make_unet(label_dropout=1.0)
    x, c = torch.randn(4, 1, 16, 16), one_hot([0, 1, 2, 0])
    uncond = unet.eval()(x, 0.0, c, force_uncond=True)
    torch.testing.assert_close(unet.train()(x, 0.0, c), uncond)
    assert not torch.allclose(unet.eval()(x, 0.0, c), uncond)  # no dropout in eval


def test_label_dropout_mask_is_reproducible_from_a_generator():
    unet = make_unet(label_dropout=0.5).train()
    masks = [unet.uncond_mask(256, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])
    assert 0.35 < masks[0].float().mean() < 0.65
    x, c = torch.randn(6, 1, 16, 16), one_hot([0, 1, 2, 0, 1, 2])
    outs = [unet(x, 0.0, c, generator=torch.Generator().manual_seed(s)) for s in (1, 1)]
    assert torch.equal(outs[0], outs[1])
    expected = unet(x, 0.0, c, force_uncond=unet.uncond_mask(6, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(outs[0], expected)
    assert unet.eval().uncond_mask(6, generator=torch.Generator().manual_seed(1)) is None


# ------------------------------------------------------------------------------------ soft labels

def test_label_embedding_is_linear_so_soft_labels_interpolate():
    unet = make_unet().eval()  # no label dropout
    e = unet.embed_labels(torch.eye(3))
    half = unet.embed_labels(torch.tensor([[0.5, 0.5, 0.0]]))
    torch.testing.assert_close(half[0], (e[0] + e[1]) / 2)
    rows = gemix_labels(16, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(unet.embed_labels(rows), rows @ e)
    out = unet.eval()(torch.randn(16, 1, 16, 16), 0.5, rows)
    assert out.shape == (16, 1, 16, 16) and torch.isfinite(out).all()


# -------------------------------------------------------------------------------- preconditioning

class StubUNet(nn.Module):
    """F(x; c_noise, c) = mode(x), recording what the preconditioner feeds it."""

    def __init__(self, mode, resolution=4, channels=1, label_dim=2):
        super().__init__()
        self.mode, self.img_resolution, self.img_channels, self.label_dim = mode, resolution, channels, label_dim
        self.calls = []

    def forward(self, x, c_noise, c, *, force_uncond=None, generator=None):
        self.calls.append((x.clone(), c_noise.clone(), force_uncond))
        if self.mode == "zero":
            return torch.zeros_like(x)
        if self.mode == "one":
            return torch.ones_like(x)
        return x.clone()  # identity


def test_edm_preconditioning_matches_the_paper_formulas():
    sd = 0.5
    sigma = torch.tensor([0.002, 0.1, 0.5, 3.0, 80.0])
    x = torch.randn(5, 1, 4, 4)
    c = one_hot([0, 1, 0, 1, 0], 2)
    s = sigma.reshape(-1, 1, 1, 1)
    c_skip = sd**2 / (s**2 + sd**2)
    c_out = s * sd / torch.sqrt(s**2 + sd**2)
    c_in = 1 / torch.sqrt(s**2 + sd**2)
    torch.testing.assert_close(EDMPrecond(StubUNet("zero"), sd)(x, sigma, c), c_skip * x)
    torch.testing.assert_close(EDMPrecond(StubUNet("one"), sd)(x, sigma, c), c_skip * x + c_out)
    stub = StubUNet("identity")
    torch.testing.assert_close(EDMPrecond(stub, sd)(x, sigma, c), (c_skip + c_out * c_in) * x)
    fed_x, fed_noise, _ = stub.calls[0]
    torch.testing.assert_close(fed_x, c_in * x)
    torch.testing.assert_close(fed_noise, sigma.log() / 4)
    # At sigma = sigma_data: c_skip = 1/2 and c_out * c_in = 1/2.
    torch.testing.assert_close(EDMPrecond(StubUNet("identity"), sd)(x, sd, c), x)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        EDMPrecond(stub)(x, 0.0, c)


def test_untrained_loss_is_one_for_data_of_variance_sigma_data():
    sd = 0.5
    g = torch.Generator().manual_seed(0)
    # Pixels of +-sd: variance exactly sd^2.
    images = (torch.randint(0, 2, (4096, 1, 4, 4), generator=g) * 2 - 1) * sd
    stub = StubUNet("zero")
    loss = edm_loss(EDMPrecond(stub, sd), images, one_hot([0] * 4096, 2), generator=g, sigma_data=sd)
    assert loss.shape == (4096,)
    assert abs(loss.mean().item() - 1) < 0.03
    # Sigmas are log-normal with the given P_mean and P_std.
    log_sigma = 4 * stub.calls[0][1]
    assert abs(log_sigma.mean().item() + 1.2) < 0.06 and abs(log_sigma.std().item() - 1.2) < 0.06
    # Data of four times the variance: the weighting is no longer matched and the loss is higher.
    loss = edm_loss(EDMPrecond(StubUNet("zero"), sd), images * 2, one_hot([0] * 4096, 2), generator=g)
    assert loss.mean() > 1.5


def test_edm_loss_is_reproducible_from_a_generator():
    denoiser = EDMPrecond(make_unet(label_dropout=0.5)).train()
    images, c = torch.rand(4, 1, 16, 16) * 2 - 1, one_hot([0, 1, 2, 0])
    a, b = (edm_loss(denoiser, images, c, generator=torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------- sampler

def test_sigma_schedule():
    t = edm_sigma_steps(18)
    assert t.shape == (19,) and t[0] == 80 and t[-1] == 0
    torch.testing.assert_close(t[-2], torch.tensor(0.002, dtype=torch.float64))
    assert (t[1:] < t[:-1]).all()
    assert edm_sigma_steps(1).tolist() == [80.0, 0.0]


def test_sampler_is_seeded_and_batch_invariant():
    denoiser = EDMPrecond(make_unet())
    labels = torch.tensor([[1.0, 0, 0], [0, 0.3, 0.7], [0, 1, 0]])
    a = edm_sample(denoiser, labels, num_steps=3, seed=11)
    b = edm_sample(denoiser, labels, num_steps=3, seed=11, batch=1)
    c = edm_sample(denoiser, labels, num_steps=3, seed=12)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32 and a.abs().max() <= 1
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)  # up to rounding of batch-size-dependent kernels
    assert torch.equal(a, edm_sample(denoiser, labels, num_steps=3, seed=11))
    assert (a - c).abs().amax(dim=(1, 2, 3)).min() > 1e-2
    # Sample i's noise depends on (seed, i) only, not on the samples after it.
    torch.testing.assert_close(edm_sample(denoiser, labels[:2], num_steps=3, seed=11), a[:2], atol=1e-3, rtol=0)


def test_sampler_restores_training_mode():
    denoiser = EDMPrecond(make_unet(label_dropout=1.0)).train()
    out = edm_sample(denoiser, one_hot([0, 1]), num_steps=2)
    ref = edm_sample(denoiser.eval(), one_hot([0, 1]), num_steps=2)
    torch.testing.assert_close(out, ref)  # label dropout did not run while sampling
    denoiser.train()
    edm_sample(denoiser, one_hot([0, 1]), num_steps=1)
    assert denoiser.training


class PointDenoiser(nn.Module):
    """The exact denoiser of a data set: per class, one image or a Gaussian N(mean, std^2 I)."""

    def __init__(self, means, std=0.0):
        super().__init__()
        self.means, self.std = means, std
        self.img_channels, self.img_resolution, self.label_dim = means.shape[1], means.shape[2], means.shape[0]
        self.calls = []

    def forward(self, x, sigma, c, *, force_uncond=None, generator=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1, 1)
        self.calls.append(x.shape[0])
        mu = torch.einsum("nk,kchw->nchw", c.double(), self.means.double())
        # E[y | x] for y ~ N(mu, s^2) and x = y + sigma n: mu + s^2 / (s^2 + sigma^2) (x - mu).
        return mu + self.std**2 / (self.std**2 + sigma**2) * (x.double() - mu)


def test_heun_sampler_recovers_a_one_image_per_class_data_set():
    means = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    out = edm_sample(PointDenoiser(means), one_hot([0, 1, 1, 0], 2), seed=3)
    torch.testing.assert_close(out, means[[0, 1, 1, 0]].float(), atol=1e-5, rtol=0)


def test_heun_sampler_converges_to_the_gaussian_flow_at_second_order():
    # For Gaussian data the probability-flow ODE has a closed-form solution: from x(sigma_max),
    # x(0) = mu + (x(sigma_max) - mu) * s / sqrt(s^2 + sigma_max^2).
    means, s = torch.tensor([-0.3, 0.4]).reshape(2, 1, 1, 1).expand(2, 1, 4, 4).contiguous(), 0.2
    latents = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = one_hot(torch.arange(64) % 2, 2)
    mu = means[torch.arange(64) % 2]
    expected = (mu + (80 * latents - mu) * s / math.sqrt(s**2 + 80**2)).clamp(-1, 1)
    errors = {n: (edm_sample(PointDenoiser(means, s), labels, latents=latents, num_steps=n) - expected).abs().mean()
              for n in (9, 18, 36)}
    assert errors[18] < 0.02
    # Halving the step size divides the error of a second-order method by about 4.
    assert errors[9] / errors[18] > 3 and errors[18] / errors[36] > 3, errors


def test_classifier_free_guidance_combination():
    # One step from sigma_max to 0 returns D itself, so the output is the guided combination.
    class TwoWay(PointDenoiser):
        def forward(self, x, sigma, c, *, force_uncond=None, generator=None):
            self.calls.append((x.shape[0], force_uncond if isinstance(force_uncond, bool) else force_uncond.tolist()))
            uncond = torch.as_tensor(force_uncond, dtype=torch.bool).expand(x.shape[0])
            return torch.where(uncond.reshape(-1, 1, 1, 1), -0.25, 0.5).expand_as(x).double()

    labels = one_hot([0, 1], 2)
    for w, expected in [(0.0, -0.25), (1.0, 0.5), (0.5, 0.125), (2.0, 1.0)]:
        d = TwoWay(torch.zeros(2, 1, 4, 4))
        out = edm_sample(d, labels, num_steps=1, guidance=w)
        torch.testing.assert_close(out, torch.full_like(out, expected))
        assert len(d.calls) == 1  # one network call per evaluation, guided or not
        if w not in (0.0, 1.0):
            assert d.calls[0] == (4, [False, False, True, True])
        else:
            assert d.calls[0] == (2, w == 0.0)


def test_trained_tiny_unet_reproduces_each_class_image():
    r = 16
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    images = torch.stack([torch.where(xx**2 + yy**2 < 0.4, 0.8, -0.8),
                          torch.where(yy.abs() < 0.3, 0.8, -0.8)])[:, None]
    torch.manual_seed(0)
    unet = DiffusionUNet(r, 1, 2, model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=())
    denoiser = EDMPrecond(unet)
    opt = torch.optim.Adam(denoiser.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    steps = 300
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    cls = torch.arange(16) % 2
    for _ in range(steps):
        loss = edm_loss(denoiser, images[cls], one_hot(cls, 2), generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    out = edm_sample(denoiser, one_hot([0, 1, 0, 1], 2), num_steps=12, seed=1)
    err = (out - images[[0, 1, 0, 1]]).abs().mean(dim=(1, 2, 3))
    gap = (images[0] - images[1]).abs().mean()
    assert err.max() < gap / 4, (err, gap)


def test_soft_labels_land_between_their_classes():
    """GeMix's premise, as for the GAN: after training on dark (class 0) against bright (class 1)
    images, a 50/50 label gives samples whose brightness (a perfect classifier's score here)
    lies between the two classes' own, with the same noise."""
    r = 8
    torch.manual_seed(0)
    unet = DiffusionUNet(r, 1, 2, model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=())
    denoiser = EDMPrecond(unet)
    opt = torch.optim.Adam(denoiser.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(250):
        cls = torch.randint(0, 2, (32,), generator=g)
        images = torch.where(cls == 1, 0.6, -0.6).reshape(-1, 1, 1, 1) + 0.1 * torch.randn(32, 1, r, r, generator=g)
        loss = edm_loss(denoiser, images, one_hot(cls, 2), generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def brightness(w):
        labels = torch.tensor([[1 - w, w]]).repeat(16, 1)
        return edm_sample(denoiser, labels, num_steps=10, seed=3).mean().item()

    dark, middle, bright = brightness(0.0), brightness(0.5), brightness(1.0)
    assert dark < middle < bright, (dark, middle, bright)
    assert bright - dark > 0.6  # the classes are clearly apart: the check is not vacuous


# ------------------------------------------------------------------------------ implementations

@pytest.mark.parametrize("impl", cpu_kernel_impls())
def test_compiled_impls_match_the_reference(impl):
    tiny = impl == "triton"  # the Triton interpreter is slow: the smallest network that has it all
    unet = make_unet(8 if tiny else 16, 3, model_channels=8 if tiny else 16,
                     attn_resolutions=(4,) if tiny else (8,)).eval()
    n, r = 2, unet.img_resolution
    x = torch.randn(n, 3, r, r)
    ref = set_impl(copy.deepcopy(unet), "ref")(x, torch.tensor([0.2, -0.7]), one_hot([0, 2]))
    out = set_impl(unet, impl)(x, torch.tensor([0.2, -0.7]), one_hot([0, 2]))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------- bad input

def test_sampler_rejects_bad_arguments():
    denoiser = EDMPrecond(make_unet())
    labels = one_hot([0, 1])
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        edm_sample(denoiser, labels, guidance=-0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \(N, 3\)"):
        edm_sample(denoiser, one_hot([0, 1], 2))
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        edm_sample(denoiser, labels, num_steps=0)
    with pytest.raises(TypeError, match="num_steps must be an int"):
        edm_sample(denoiser, labels, num_steps=2.5)
    with pytest.raises(TypeError, match="labels must be floating point"):
        edm_sample(denoiser, torch.tensor([[1, 0, 0]]))
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        edm_sample(denoiser, [[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="labels must be finite"):
        edm_sample(denoiser, torch.tensor([[float("nan"), 0.0, 1.0]]))
    with pytest.raises(ValueError, match="latents must have shape"):
        edm_sample(denoiser, labels, latents=torch.zeros(3, 1, 16, 16))
    with pytest.raises(ValueError, match=r"sigma_max .* must be >= sigma_min"):
        edm_sample(denoiser, labels, sigma_min=1.0, sigma_max=0.5)


def test_model_rejects_bad_arguments():
    unet = make_unet()
    x = torch.zeros(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"c must have shape \(N, 3\)"):
        unet(x, 0.0, one_hot([0, 1], 2))
    with pytest.raises(ValueError, match="c must be floating point"):
        unet(x, 0.0, torch.tensor([[1, 0, 0], [0, 1, 0]]))
    with pytest.raises(ValueError, match="c has batch size 1"):
        unet(x, 0.0, one_hot([0]))
    with pytest.raises(ValueError, match=r"c_noise must be a number or a tensor of shape \(2,\)"):
        unet(x, torch.zeros(3), one_hot([0, 1]))
    with pytest.raises(TypeError, match="force_uncond must be None, a bool or a bool tensor"):
        unet(x, 0.0, one_hot([0, 1]), force_uncond=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"force_uncond must have shape \(2,\)"):
        unet(x, 0.0, one_hot([0, 1]), force_uncond=torch.tensor([True]))
    with pytest.raises(TypeError, match="x must be floating point"):
        unet(x.long(), 0.0, one_hot([0, 1]))
    with pytest.raises(ValueError, match="label_dropout must be <= 1"):
        DiffusionUNet(16, 1, 3, label_dropout=1.5)
    with pytest.raises(ValueError, match="label_dim must be >= 1"):
        DiffusionUNet(16, 1, 0)
    with pytest.raises(TypeError, match="img_channels must be an int"):
        DiffusionUNet(16, 1.0, 3)
