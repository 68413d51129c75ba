"""ADA: identity at p=0, each transform family on its own, colour handling per channel count,
gradients (first and second order) through the pipe, and the adaptive p heuristic, including
a discriminator that overfits a tiny real set."""

import pytest
import torch
import torch.nn.functional as F

from genmix.models.augment import AdaptiveP, AugmentPipe

ALL_OFF = dict(xflip=0, rotate90=0, xint=0, scale=0, rotate=0, aniso=0, xfrac=0,
               brightness=0, contrast=0, saturation=0)


def only(p=1.0, **enabled):
    """A pipe with only the given transforms switched on, at probability p."""
    pipe = AugmentPipe(**{**ALL_OFF, **enabled})
    pipe.p.fill_(p)
    return pipe


def images(n=16, c=3, size=16, dtype=torch.float32):
    return (torch.rand(n, c, size, size, dtype=dtype) * 2 - 1)


# ------------------------------------------------------------------------------- identity / basics

@pytest.mark.parametrize("c", [1, 3])
def test_p_zero_is_exact_identity(c):
    x = images(c=c)
    out = AugmentPipe()(x)
    assert torch.equal(out, x)


@pytest.mark.parametrize("c", [1, 3])
def test_p_one_changes_images(c):
    x = images(c=c)
    pipe = AugmentPipe()
    pipe.p.fill_(1.0)
    out = pipe(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    changed = (out != x).flatten(1).any(dim=1)
    assert changed.all()


def test_deterministic_under_seed():
    x = images()
    pipe = AugmentPipe(xfrac=1)
    pipe.p.fill_(0.7)
    torch.manual_seed(5)
    a = pipe(x)
    torch.manual_seed(5)
    b = pipe(x)
    torch.manual_seed(6)
    c = pipe(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_each_sample_is_augmented_with_probability_p():
    x = torch.zeros(4000, 1, 4, 4)
    out = only(0.3, brightness=1)(x)
    fraction = (out != x).flatten(1).any(dim=1).float().mean().item()
    assert abs(fraction - 0.3) < 0.04


def test_p_is_a_buffer_in_state_dict():
    pipe = AugmentPipe()
    pipe.p.fill_(0.25)
    other = AugmentPipe()
    other.load_state_dict(pipe.state_dict())
    assert float(other.p) == 0.25


# ------------------------------------------------------------------------------- geometric families

def test_xflip_alone_gives_input_or_its_mirror():
    x = images(n=32)
    out = only(xflip=1)(x)
    kinds = []
    for i in range(len(x)):
        same, mirrored = torch.equal(out[i], x[i]), torch.equal(out[i], x[i].flip(-1))
        assert same or mirrored, f"sample {i} is neither x nor x flipped"
        kinds.append(mirrored)
    assert 0 < sum(kinds) < len(kinds)  # both outcomes occur


@pytest.mark.parametrize("size", [16, 32])
def test_rotate90_alone_gives_an_exact_rotation(size):
    x = images(n=32, size=size)
    out = only(rotate90=1)(x)
    seen = set()
    for i in range(len(x)):
        ks = [k for k in range(4) if torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1)))]
        assert ks, f"sample {i} is not an exact 90 degree rotation of its input"
        seen.add(ks[0])
    assert len(seen) >= 3


def test_integer_translation_moves_pixels_exactly():
    size, max_shift = 16, 2  # xint_max 0.125 of 16 px
    x = images(n=24, size=size)
    out = only(xint=1)(x)
    shifts = []
    for i in range(len(x)):
        # Every output value is some input pixel of the same sample (reflection, no blending).
        assert torch.isin(out[i], x[i]).all()
        inner = out[i][:, max_shift:-max_shift, max_shift:-max_shift]
        shifts_to_try = range(-max_shift, max_shift + 1)
        match = [(dy, dx) for dy in shifts_to_try for dx in shifts_to_try
                 if torch.equal(inner, x[i][:, max_shift + dy:size - max_shift + dy,
                                             max_shift + dx:size - max_shift + dx])]
        assert len(match) == 1, f"sample {i} is not an integer translation of its input"
        shifts.append(match[0])
    assert len(set(shifts)) > 3


def test_general_geometric_keeps_a_constant_image_constant():
    # Reflection padding: no border darkening, whatever the warp.
    x = torch.full((8, 3, 16, 16), 0.5)
    out = only(scale=1, rotate=1, aniso=1, xfrac=1)(x)
    assert torch.allclose(out, x, atol=1e-6)


def test_general_geometric_changes_a_pattern():
    x = images(n=8)
    out = only(scale=1, rotate=1, aniso=1)(x)
    assert (out - x).abs().flatten(1).amax(dim=1).min() > 1e-3
    # Interpolation never overshoots the input's range.
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6


# ---------------------------------------------------------------------------------- colour families

@pytest.mark.parametrize("c", [1, 3])
def test_brightness_alone_shifts_every_pixel_equally(c):
    x = images(n=32, c=c)
    out = only(brightness=1)(x)
    shift = (out - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert shift[:, 0].abs().min() > 0
    assert 0.1 < shift[:, 0].std() < 0.4  # brightness_std = 0.2


def test_contrast_alone_scales_about_zero():
    x = images(n=16, c=1)
    out = only(contrast=1)(x)
    ratio = (out / x).flatten(1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5)
    assert (ratio > 0).all() and not torch.allclose(ratio, torch.ones_like(ratio))


def test_saturation_keeps_grey_level_and_grey_pixels():
    x = images(n=16, c=3)
    x[:, :, :4] = x[:, :1, :4]  # a grey band: equal channels
    out = only(saturation=1)(x)
    assert torch.allclose(out.mean(dim=1), x.mean(dim=1), atol=1e-5)
    assert torch.allclose(out[:, :, :4], x[:, :, :4], atol=1e-5)
    assert not torch.allclose(out, x, atol=1e-3)


def test_saturation_is_ignored_for_grayscale():
    x = images(n=8, c=1)
    assert torch.equal(only(saturation=1)(x), x)


@pytest.mark.parametrize("c", [1, 3])
def test_full_pipe_runs_for_grayscale_and_rgb(c):
    x = images(n=8, c=c, size=32).requires_grad_()
    pipe = AugmentPipe(xfrac=1)
    pipe.p.fill_(0.8)
    out = pipe(x)
    assert out.shape == (8, c, 32, 32) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------- gradients

def _seeded(pipe):
    def f(x):
        torch.manual_seed(3)  # same random draws on every call
        return pipe(x)
    return f


def test_gradcheck_geometric_path():
    f = _seeded(only(scale=1, rotate=1, aniso=1, xfrac=1, xflip=1, rotate90=1, xint=1))
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert not torch.equal(f(x), x)
    assert torch.autograd.gradcheck(f, (x,))


def test_gradcheck_colour_path_and_second_order():
    # The R1 penalty differentiates D's gradient through the pipe, so second order must work.
    pipe = AugmentPipe(xfrac=1)
    pipe.p.fill_(1.0)
    f = _seeded(pipe)
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(lambda t: f(t).square(), (x,))


def test_validation():
    with pytest.raises(ValueError, match="xint_max"):
        AugmentPipe(xint_max=0.9)
    with pytest.raises(ValueError, match="rotate_max"):
        AugmentPipe(rotate_max=2)
    with pytest.raises(TypeError, match="xflip"):
        AugmentPipe(xflip="yes")
    with pytest.raises(ValueError, match="scale_std"):
        AugmentPipe(scale_std=-1)
    pipe = AugmentPipe()
    with pytest.raises(TypeError, match="images"):
        pipe([[0.0]])
    with pytest.raises(ValueError, match="images"):
        pipe(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="images"):
        pipe(torch.zeros(1, 3, 8, 8, dtype=torch.long))


@pytest.mark.cuda
def test_cuda_exact_integer_transforms_and_identity():
    x = images(n=32).cuda()
    assert torch.equal(AugmentPipe().cuda()(x), x)
    out = only(rotate90=1).cuda()(x)
    for i in range(len(x)):
        assert any(torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1))) for k in range(4))
    pipe = AugmentPipe().cuda()
    pipe.p.fill_(1.0)
    assert torch.isfinite(pipe(x)).all()


# -------------------------------------------------------------------------------------- AdaptiveP

def test_adaptive_p_rises_when_d_is_sure_of_reals():
    pipe = AugmentPipe()
    ada = AdaptiveP(pipe, batch_size=8, interval=4, kimg=1)
    for _ in range(3):
        ada.accumulate(torch.ones(8, 1))
        assert ada.update() is None
    assert ada.p == 0
    ada.accumulate(torch.ones(8, 1))
    assert ada.update() == 1.0
    assert ada.p == pytest.approx(8 * 4 / 1000)
    assert float(pipe.p) == pytest.approx(8 * 4 / 1000)
    assert ada.update() is None  # the accumulator was reset


def test_adaptive_p_falls_and_clamps_at_zero_and_one():
    pipe = AugmentPipe()
    pipe.p.fill_(0.05)
    ada = AdaptiveP(pipe, batch_size=10, interval=2, kimg=1)  # steps of 0.02
    history = []
    for _ in range(10):
        ada.accumulate(-torch.ones(10))
        ada.accumulate(-torch.ones(10))
        assert ada.update() == -1.0
        history.append(ada.p)
    assert history[0] == pytest.approx(0.03) and history[1] == pytest.approx(0.01)
    assert history[-1] == 0.0
    pipe.p.fill_(0.99)
    ada.accumulate(torch.ones(10))
    ada.accumulate(torch.ones(10))
    ada.update()
    assert ada.p == 1.0


def test_adaptive_p_holds_at_target_and_uses_reduce():
    pipe = AugmentPipe()
    pipe.p.fill_(0.5)
    ada = AdaptiveP(pipe, batch_size=4, interval=1, target=0.5, kimg=1)
    ada.accumulate(torch.tensor([1.0, 1.0, 1.0, -1.0]))  # r_t = 0.5 = target
    assert ada.update() == 0.5 and ada.p == 0.5

    # Another process saw only negatives: the combined r_t is 0 and p falls.
    other = torch.tensor([-4.0, 4.0], dtype=torch.float64)
    ada.accumulate(torch.ones(4))
    assert ada.update(reduce=lambda t: t + other) == 0.0
    assert ada.p < 0.5

    def in_place(t):  # like torch.distributed.all_reduce: modifies t, returns None
        t += other
    ada.accumulate(torch.ones(4))
    assert ada.update(reduce=in_place) == 0.0


def test_adaptive_p_state_round_trip(tmp_path):
    from genmix.training.checkpoint import load_checkpoint, save_checkpoint

    def run(ada, steps):
        for _ in range(steps):
            ada.accumulate(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -1.0]))  # r_t = 2/3
            ada.update()

    ada = AdaptiveP(AugmentPipe(), batch_size=6, interval=4, kimg=0.1)
    run(ada, 6)  # one update done, two steps pending
    path = save_checkpoint(tmp_path, 6, {"ada": ada.state_dict()})
    restored = AdaptiveP(AugmentPipe(), batch_size=6, interval=4, kimg=0.1)
    restored.load_state_dict(load_checkpoint(path)["ada"])
    assert restored.p == ada.p > 0
    run(ada, 2)
    run(restored, 2)  # the pending steps complete the interval in both
    assert restored.p == ada.p == pytest.approx(2 * 6 * 4 / 100)

    with pytest.raises(ValueError, match="state"):
        restored.load_state_dict({"p": 0.5})


def test_adaptive_p_validation():
    pipe = AugmentPipe()
    with pytest.raises(TypeError):
        AdaptiveP(pipe)  # batch_size is required
    with pytest.raises(ValueError, match="batch_size"):
        AdaptiveP(pipe, batch_size=0)
    with pytest.raises(ValueError, match="interval"):
        AdaptiveP(pipe, batch_size=4, interval=0)
    with pytest.raises(ValueError, match="kimg"):
        AdaptiveP(pipe, batch_size=4, kimg=0)
    with pytest.raises(TypeError, match="pipe"):
        AdaptiveP(torch.nn.Identity(), batch_size=4)
    with pytest.raises(TypeError, match="real_logits"):
        AdaptiveP(pipe, batch_size=4).accumulate([1.0])


def _tiny_d_setup():
    reals = torch.tanh(torch.randn(8, 1, 8, 8).cumsum(-1) * 0.5)  # 8 fixed, smooth-ish images
    d = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.LeakyReLU(0.2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 1))
    return reals, d, torch.optim.Adam(d.parameters(), lr=1e-2)


def _d_step(d, opt, pipe, reals, real_sign=1.0):
    """One logistic D step on pipe(reals) vs noise; returns the real logits."""
    fakes = torch.randn(8, 1, 8, 8) * 0.5
    real_logits = d(pipe(reals))
    loss = F.softplus(-real_sign * real_logits).mean() + F.softplus(real_sign * d(pipe(fakes))).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return real_logits.detach()


def _run_ada(d, opt, pipe, ada, reals, steps, real_sign=1.0):
    r_ts, ps = [], []
    for _ in range(steps):
        ada.accumulate(_d_step(d, opt, pipe, reals, real_sign))
        r_t = ada.update()
        if r_t is not None:
            r_ts.append(r_t)
            ps.append(ada.p)
    return r_ts, ps


def test_adaptive_p_rises_when_a_tiny_d_overfits():
    """What ADA is for: a small D memorises 8 fixed reals, the heuristic notices and raises p."""
    reals, d, opt = _tiny_d_setup()
    pipe = AugmentPipe()
    for _ in range(40):  # overfit first, without augmentation (p stays 0)
        _d_step(d, opt, pipe, reals)
    assert (torch.sigmoid(d(reals)) > 0.95).all()

    ada = AdaptiveP(pipe, batch_size=8, interval=4, kimg=0.32)  # steps of 0.1
    r_ts, ps = _run_ada(d, opt, pipe, ada, reals, steps=16)
    assert r_ts[0] > 0.9 and ps[0] == pytest.approx(0.1)
    # From then on augmented reals lower D's confidence, so p settles where r_t meets the target.
    assert sum(r_ts) / len(r_ts) > ada.target and max(ps) >= 0.1


def test_adaptive_p_stays_zero_when_d_rejects_reals():
    # The same setup with the labels swapped: D(real) < 0, so there is nothing to counter.
    reals, d, opt = _tiny_d_setup()
    pipe = AugmentPipe()
    for _ in range(40):
        _d_step(d, opt, pipe, reals, real_sign=-1.0)
    ada = AdaptiveP(pipe, batch_size=8, interval=4, kimg=0.32)
    r_ts, ps = _run_ada(d, opt, pipe, ada, reals, steps=8, real_sign=-1.0)
    assert max(r_ts) < 0 and ps == [0.0, 0.0]
