"""sample_dirichlet, gemix_labels and mix_batch: distributions, exactness, reproducibility."""

import math

import pytest
import torch

from backends import cpu_kernel_impls
from genmix.ops import BackendUnavailable, gemix_labels, mix_batch, sample_beta, sample_dirichlet
from genmix.ops import _random

ALL_CPU_IMPLS = [pytest.param("ref", id="ref")] + cpu_kernel_impls()


# ------------------------------------------------------------------------- distribution helpers

def beta_cdf(x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Regularised incomplete beta I_x(a, b) in float64 by quadrature.

    For x <= 1/2 substitute u = t**a, which removes the t**(a-1) singularity at 0; for x > 1/2
    use I_x(a, b) = 1 - I_{1-x}(b, a). The integrand is then bounded and smooth enough for a
    fine trapezoid rule (accurate far beyond what a KS test of a few thousand samples needs).
    """
    x = x.double()
    out = torch.empty_like(x)
    low = x <= 0.5
    out[low] = _beta_cdf_low(x[low], a, b)
    out[~low] = 1 - _beta_cdf_low(1 - x[~low], b, a)
    return out


def _beta_cdf_low(x, a, b):
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64)
    results = []
    for xi in x.tolist():
        if a < 1:  # u = t**a: the integrand (1 - u**(1/a))**(b-1) / a is bounded on [0, x**a]
            u = grid * xi ** a
            integral = torch.trapezoid((1 - u ** (1 / a)).clamp_min(0) ** (b - 1), u).item() / a
        else:  # no singularity at 0, and (1 - t)**(b-1) is bounded for t <= 1/2
            t = grid * xi
            integral = torch.trapezoid(t ** (a - 1) * (1 - t) ** (b - 1), t).item()
        results.append(integral / math.exp(log_beta))
    return torch.tensor(results, dtype=torch.float64)


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov distance that respects floating-point rounding.

    Heavy-tailed Betas (a, b ~ 0.05) put several percent of their mass within one ulp of 0 or
    1, so samples tie there; the empirical CDF just below a tied value is compared with the
    true CDF at the float just below it (the rounding cell), not at the value itself.
    """
    s, _ = samples.sort()
    below = torch.nextafter(s, torch.full_like(s, -1.0)).double()
    s = s.double()
    n = s.numel()
    at_or_below = torch.searchsorted(s, s, right=True).double() / n
    strictly_below = torch.searchsorted(s, s, right=False).double() / n
    return max((at_or_below - cdf(s)).max().item(), (cdf(below.clamp_min(0)) - strictly_below).max().item())


def ks_critical(n: int) -> float:
    return 1.95 / math.sqrt(n)  # significance 0.001: a correct sampler fails once in a thousand seeds


# ------------------------------------------------------------------------------ the reference

def test_philox_known_answers():
    zero = torch.zeros(1, dtype=torch.int64)
    ones = torch.full((1,), 0xFFFFFFFF, dtype=torch.int64)
    assert [int(v) for v in _random.philox4x32((zero,) * 4, (0, 0))] == [
        0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert [int(v) for v in _random.philox4x32((ones,) * 4, (0xFFFFFFFF, 0xFFFFFFFF))] == [
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


@pytest.mark.parametrize("a", [0.05, 0.3, 1.0, 5.0, 20.0])
def test_reference_gamma_matches_the_gamma_cdf(a):
    n = 4000
    streams = _random.Streams(7, _random.TAG_DIRICHLET, torch.arange(n), torch.float64)
    samples = torch.exp(_random.log_gamma(streams, torch.full((n,), a, dtype=torch.float64)))
    stat = ks_statistic(samples, lambda s: torch.special.gammainc(torch.full_like(s, a), s))
    assert stat < ks_critical(n), f"KS {stat:.4f} for Gamma({a})"
    assert abs(samples.mean().item() - a) < 5 * math.sqrt(a / n)


# ---------------------------------------------------------------------------- sample_dirichlet

@pytest.mark.parametrize("impl", ALL_CPU_IMPLS)
@pytest.mark.parametrize("a, b", [(0.05, 0.05), (0.3, 1.0), (1.0, 1.0), (5.0, 2.0), (20.0, 20.0), (0.05, 20.0)])
def test_dirichlet_marginal_is_beta(impl, a, b):
    n = 2000 if impl == "triton" else 4000
    conc = torch.tensor([a, b], dtype=torch.float64).expand(n, 2).contiguous()
    rows = sample_dirichlet(conc, generator=11, impl=impl)
    assert torch.allclose(rows.sum(1), torch.ones(n, dtype=torch.float64))
    assert (rows >= 0).all()
    x = rows[:, 0]
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(x.var().item() - var) < 0.15 * var + 1e-4
    stat = ks_statistic(x, lambda s: beta_cdf(s, a, b))
    assert stat < ks_critical(n), f"KS {stat:.4f} for Beta({a}, {b})"


@pytest.mark.parametrize("impl", cpu_kernel_impls())
def test_kernels_draw_the_reference_samples(impl):
    # Every backend follows the same counter-based algorithm, so with one seed the rows agree
    # with the reference up to rounding (float64 makes diverging rejection decisions vanishingly rare).
    conc = torch.rand(300, 5, dtype=torch.float64) * 10 + 0.02
    ref = sample_dirichlet(conc, generator=99, impl="ref")
    got = sample_dirichlet(conc, generator=99, impl=impl)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    ref32 = sample_dirichlet(conc.float(), generator=5, impl="ref")
    got32 = sample_dirichlet(conc.float(), generator=5, impl=impl)
    close = torch.isclose(got32, ref32, rtol=1e-3, atol=1e-5).all(dim=1)
    assert close.float().mean() > 0.98


@pytest.mark.parametrize("impl", ALL_CPU_IMPLS)
def test_dirichlet_rows_may_differ_and_stay_on_the_simplex(impl):
    conc = torch.tensor([[0.05, 0.05, 0.05], [20.0, 1.0, 1.0], [1.0, 1.0, 30.0]]).repeat(500, 1)
    rows = sample_dirichlet(conc, generator=3, impl=impl)
    assert torch.isfinite(rows).all() and torch.allclose(rows.sum(1), torch.ones(1500), atol=1e-5)
    means = rows.reshape(500, 3, 3).mean(0)
    torch.testing.assert_close(means[1], torch.tensor([20 / 22, 1 / 22, 1 / 22]), atol=0.02, rtol=0)
    torch.testing.assert_close(means[2], torch.tensor([1 / 32, 1 / 32, 30 / 32]), atol=0.02, rtol=0)


@pytest.mark.parametrize("impl", ALL_CPU_IMPLS)
def test_dirichlet_is_reproducible_by_seed_and_generator(impl):
    conc = torch.full((64, 4), 0.5)
    assert torch.equal(sample_dirichlet(conc, generator=1, impl=impl), sample_dirichlet(conc, generator=1, impl=impl))
    assert not torch.equal(sample_dirichlet(conc, generator=1, impl=impl), sample_dirichlet(conc, generator=2, impl=impl))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    first = sample_dirichlet(conc, generator=g1, impl=impl)
    assert torch.equal(first, sample_dirichlet(conc, generator=g2, impl=impl))
    assert not torch.equal(first, sample_dirichlet(conc, generator=g1, impl=impl))  # generator advanced
    torch.manual_seed(8)
    a = sample_dirichlet(conc, impl=impl)
    torch.manual_seed(8)
    assert torch.equal(a, sample_dirichlet(conc, impl=impl))


def test_dirichlet_shapes_and_bad_input():
    assert sample_dirichlet(torch.ones(3)).shape == (3,)
    assert sample_dirichlet(torch.ones(0, 3)).shape == (0, 3)
    assert sample_beta(10, 0.3, 1.0).shape == (10,)
    with pytest.raises(ValueError, match="finite and > 0"):
        sample_dirichlet(torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match="finite and > 0"):
        sample_dirichlet(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="must have 1 or 2 dimensions"):
        sample_dirichlet(torch.ones(2, 2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        sample_dirichlet(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="generator"):
        sample_dirichlet(torch.ones(3), generator="seed")
    with pytest.raises(BackendUnavailable):
        sample_dirichlet(torch.ones(3), impl="cuda")


# ------------------------------------------------------------------------------- gemix_labels

def test_gemix_single_mode_concentrates_on_the_class():
    y = gemix_labels(2000, 4, classes=2, maj=30.0, min=0.5, mode="single", generator=0)
    assert y.shape == (2000, 4) and torch.allclose(y.sum(1), torch.ones(2000), atol=1e-5)
    assert (y.argmax(1) == 2).float().mean() > 0.95
    assert abs(y[:, 2].mean().item() - 30 / 31.5) < 0.01


def test_gemix_blend_lies_between_the_two_classes():
    classes = torch.tensor([[0, 3]]).expand(3000, 2)
    y = gemix_labels(3000, 5, classes=classes, maj=50.0, min=0.1, beta=1.0, generator=4)
    assert torch.allclose(y.sum(1), torch.ones(3000), atol=1e-5)
    pair_mass = y[:, 0] + y[:, 3]
    assert pair_mass.mean() > 0.97
    share = y[:, 0] / pair_mass  # ~ lambda ~ Beta(1, 1): uniform
    assert abs(share.mean().item() - 0.5) < 0.03 and abs(share.var().item() - 1 / 12) < 0.01


def test_gemix_random_pairs_are_distinct_and_reproducible():
    a = gemix_labels(500, 3, maj=100.0, min=0.01, generator=9)
    b = gemix_labels(500, 3, maj=100.0, min=0.01, generator=9)
    assert torch.equal(a, b)
    top2 = a.topk(2, dim=1)
    assert (top2.values.sum(1) > 0.9).float().mean() > 0.95  # mass on two classes
    assert not torch.equal(a, gemix_labels(500, 3, maj=100.0, min=0.01, generator=10))


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(classes=[[0, 5]] * 4), ValueError, r"classes must lie in \[0, 3\)"),
        (dict(classes=[0, 1, 2]), ValueError, "pair"),
        (dict(classes=[0.5, 1.0]), TypeError, "integer class indices"),
        (dict(maj=-1.0), ValueError, "maj must be > 0"),
        (dict(beta=0.0), ValueError, "beta must be > 0"),
        (dict(mode="triple"), ValueError, "mode must be"),
        (dict(num_classes=1), ValueError, "num_classes >= 2"),
    ],
)
def test_gemix_bad_arguments(kwargs, exc, pattern):
    args = dict(n=4, num_classes=3)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        gemix_labels(**args)


# --------------------------------------------------------------------------------- mix_batch

def _batch(n=16, shape=(3, 8, 8), k=4, dtype=torch.float32):
    if dtype == torch.uint8:
        xa, xb = (torch.randint(0, 256, (n, *shape), dtype=torch.uint8) for _ in range(2))
    else:
        xa, xb = torch.rand(n, *shape, dtype=dtype), torch.rand(n, *shape, dtype=dtype)
    ya = torch.nn.functional.one_hot(torch.randint(0, k, (n,)), k).float()
    yb = torch.softmax(torch.randn(n, k), 1)
    return xa, ya, xb, yb


@pytest.mark.parametrize("impl", ALL_CPU_IMPLS)
@pytest.mark.parametrize("dist", ["beta_a1", "beta"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.float64])
def test_mix_is_exact_given_lambda(impl, dist, dtype):
    xa, ya, xb, yb = _batch(dtype=dtype)
    if impl == "triton" and dtype == torch.float64:  # GPU kernels take 8/16/32-bit images
        with pytest.raises(BackendUnavailable, match="float64"):
            mix_batch(xa, ya, xb, yb, impl=impl)
        return
    x, y, lam = mix_batch(xa, ya, xb, yb, alpha=0.4, dist=dist, generator=3, impl=impl)
    scale = 1 / 255 if dtype == torch.uint8 else 1.0
    want_dtype = torch.float32 if dtype == torch.uint8 else dtype
    assert x.dtype == want_dtype and x.shape == xa.shape and lam.shape == (16,)
    l4 = lam.to(want_dtype).view(-1, 1, 1, 1)
    torch.testing.assert_close(x, l4 * xa.to(want_dtype) * scale + (1 - l4) * xb.to(want_dtype) * scale,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y, lam[:, None] * ya + (1 - lam[:, None]) * yb, rtol=1e-5, atol=1e-6)
    assert torch.allclose(y.sum(1), torch.ones(16), atol=1e-5)
    assert ((lam >= 0) & (lam <= 1)).all()


@pytest.mark.parametrize("impl", cpu_kernel_impls())
@pytest.mark.parametrize("dist", ["beta_a1", "beta"])
def test_mix_kernels_draw_the_reference_lambdas(impl, dist):
    xa, ya, xb, yb = _batch(n=200)
    _, _, lam_ref = mix_batch(xa, ya, xb, yb, alpha=0.7, dist=dist, generator=21, impl="ref")
    _, _, lam = mix_batch(xa, ya, xb, yb, alpha=0.7, dist=dist, generator=21, impl=impl)
    close = torch.isclose(lam, lam_ref, rtol=1e-4, atol=1e-6)
    assert close.float().mean() > 0.98


@pytest.mark.parametrize("impl", ALL_CPU_IMPLS)
@pytest.mark.parametrize("alpha", [0.05, 0.3, 1.0, 5.0])
def test_genmix_lambda_is_beta_alpha_1(impl, alpha):
    n = 300 if impl == "triton" else 4000  # the interpreter runs one program per sample
    x = torch.zeros(n, 1)
    y = torch.zeros(n, 2)
    _, _, lam = mix_batch(x, y, x, y, alpha=alpha, generator=17, impl=impl)
    stat = ks_statistic(lam, lambda s: s.clamp(0, 1) ** alpha)  # Beta(a, 1) CDF is x**a
    assert stat < ks_critical(n)
    var = alpha / ((alpha + 1) ** 2 * (alpha + 2))
    assert abs(lam.double().mean().item() - alpha / (alpha + 1)) < 5 * math.sqrt(var / n)


@pytest.mark.parametrize("impl", ALL_CPU_IMPLS)
def test_dirichlet_mixing_of_three_sources(impl):
    xa, ya, xb, yb = _batch()
    xc, _, _, yc = _batch()
    x, y, w = mix_batch(xa, ya, [xb, xc], [yb, yc], alpha=1.0, dist="dirichlet", generator=2, impl=impl)
    assert w.shape == (16, 3) and torch.allclose(w.sum(1), torch.ones(16), atol=1e-5)
    want = sum(w[:, s].view(-1, 1, 1, 1) * t for s, t in enumerate((xa, xb, xc)))
    torch.testing.assert_close(x, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y, sum(w[:, s, None] * t for s, t in enumerate((ya, yb, yc))), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ALL_CPU_IMPLS)
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
def test_half_outputs_round_the_float_result(impl, out_dtype):
    xa, ya, xb, yb = _batch(dtype=torch.uint8)
    x32, _, lam32 = mix_batch(xa, ya, xb, yb, generator=6, impl=impl)
    xh, _, lamh = mix_batch(xa, ya, xb, yb, generator=6, out_dtype=out_dtype, impl=impl)
    assert xh.dtype == out_dtype and torch.equal(lam32, lamh)
    torch.testing.assert_close(xh.float(), x32, rtol=1e-2, atol=4e-3)


@pytest.mark.parametrize("impl", ALL_CPU_IMPLS)
def test_mix_is_reproducible_and_channels_last_is_accepted(impl):
    xa, ya, xb, yb = _batch()
    a = mix_batch(xa, ya, xb, yb, generator=1, impl=impl)
    b = mix_batch(xa.contiguous(memory_format=torch.channels_last), ya,
                  xb.contiguous(memory_format=torch.channels_last), yb, generator=1, impl=impl)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    c = mix_batch(xa, ya, xb, yb, generator=2, impl=impl)
    assert not torch.equal(a[2], c[2])


def test_mix_auto_uses_reference_for_gradients():
    xa, ya, xb, yb = _batch()
    xa.requires_grad_(True)
    x, _, lam = mix_batch(xa, ya, xb, yb, generator=0)
    (g,) = torch.autograd.grad(x.sum(), xa)
    torch.testing.assert_close(g[:, 0, 0, 0], lam)
    with pytest.raises(BackendUnavailable, match="require grad"):
        mix_batch(xa, ya, xb, yb, impl="cpp")


@pytest.mark.parametrize(
    "change, exc, pattern",
    [
        (dict(x_b=torch.rand(16, 3, 8, 7)), ValueError, "x_b has shape"),
        (dict(x_b=torch.rand(16, 3, 8, 8).double()), TypeError, "x_b has dtype"),
        (dict(x_a=torch.zeros(16, 3, 8, 8, dtype=torch.int32)), TypeError, "x_a must be uint8 or floating"),
        (dict(y_b=torch.rand(15, 4)), ValueError, "y_b has 15 rows"),
        (dict(y_b=torch.rand(16, 5)), ValueError, "y_b has shape"),
        (dict(y_a=torch.zeros(16, dtype=torch.int64)), TypeError, "y_a must be a floating-point"),
        (dict(y_a=torch.zeros(16)), ValueError, "y_a must have 2 dimensions"),
        (dict(alpha=0.0), ValueError, "alpha must be a number > 0"),
        (dict(dist="uniform"), ValueError, "dist must be one of"),
        (dict(out_dtype=torch.int32), TypeError, "out_dtype"),
        (dict(x_b=torch.rand(16, 3, 8, 8, device="meta")), ValueError, "x_b is on meta"),
    ],
)
def test_mix_bad_arguments(change, exc, pattern):
    xa, ya, xb, yb = _batch()
    args = dict(x_a=xa, y_a=ya, x_b=xb, y_b=yb)
    args.update(change)
    kwargs = {k: args.pop(k) for k in ("alpha", "dist", "out_dtype") if k in args}
    with pytest.raises(exc, match=pattern):
        mix_batch(args["x_a"], args["y_a"], args["x_b"], args["y_b"], **kwargs)


def test_dirichlet_mixing_source_count_is_checked():
    xa, ya, xb, yb = _batch()
    with pytest.raises(ValueError, match="2 to 8 sources"):
        mix_batch(xa, ya, [xb] * 8, [yb] * 8, dist="dirichlet")
    with pytest.raises(ValueError, match="label sources"):
        mix_batch(xa, ya, [xb, xb], [yb], dist="dirichlet")


# ---------------------------------------------------------------- GPU (skipped without one)

@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_gpu_mix_matches_reference(impl, dtype, out_dtype):
    xa, ya, xb, yb = (t.cuda() for t in _batch(n=64, shape=(3, 33, 17), dtype=dtype))
    x, y, lam = mix_batch(xa, ya, xb, yb, generator=4, out_dtype=out_dtype, impl=impl)
    x_ref, y_ref, lam_ref = mix_batch(xa, ya, xb, yb, generator=4, out_dtype=torch.float32, impl="ref")
    torch.testing.assert_close(lam, lam_ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(x.float(), x_ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["cuda", "triton"])
def test_gpu_dirichlet_matches_reference(impl):
    conc = (torch.rand(1000, 6, dtype=torch.float64) * 10 + 0.05).cuda()
    torch.testing.assert_close(sample_dirichlet(conc, generator=3, impl=impl),
                               sample_dirichlet(conc, generator=3, impl="ref"), rtol=1e-9, atol=1e-12)


# ------------------------------------------------- gemix_labels: the paper's and the code's rule

@pytest.mark.parametrize("name, alias, classes", [
    ("paper", "blend", torch.tensor([[0, 2], [1, 3], [3, 0]]).repeat(50, 1)),
    ("paper", "blend", None),
    ("code", "single", torch.tensor([0, 1, 2]).repeat(50)),
    ("code", "single", None),
])
def test_gemix_mode_names_and_aliases_agree(name, alias, classes):
    kwargs = dict(classes=classes, maj=8.0, min=0.5, beta=0.7)
    a = gemix_labels(150, 4, mode=name, generator=torch.Generator().manual_seed(3), **kwargs)
    b = gemix_labels(150, 4, mode=alias, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(a, b)


def test_gemix_default_mode_is_the_paper_rule():
    a = gemix_labels(200, 3, generator=5)
    assert torch.equal(a, gemix_labels(200, 3, mode="paper", generator=5))
    assert not torch.equal(a, gemix_labels(200, 3, mode="code", generator=5))


def test_gemix_code_rule_class_means():
    # One Dirichlet(maj on the class, min elsewhere): E[y_c] = maj / (maj + (K - 1) min).
    k, maj, mn, n = 5, 6.0, 0.8, 20000
    y = gemix_labels(n, k, classes=1, maj=maj, min=mn, mode="code", generator=11)
    s = maj + (k - 1) * mn  # 9.2
    expected = torch.full((k,), mn / s)
    expected[1] = maj / s  # 0.652...
    assert torch.allclose(y.mean(0), expected, atol=0.005)


def test_gemix_paper_rule_class_means_and_blend_weight():
    # lam * Dir(maj on a) + (1 - lam) * Dir(maj on b), lam ~ Beta(beta, beta), E[lam] = 1/2:
    # E[y_a] = E[y_b] = (maj + min) / (2 S), others min / S, with S = maj + (K - 1) min.
    k, maj, mn, n = 4, 9.0, 1.0, 20000
    y = gemix_labels(n, k, classes=[2, 0], maj=maj, min=mn, beta=2.0, mode="paper", generator=12)
    s = maj + (k - 1) * mn  # 12
    expected = torch.tensor([(maj + mn) / (2 * s), mn / s, (maj + mn) / (2 * s), mn / s])
    assert torch.allclose(y.mean(0), expected, atol=0.006)
    # With a very peaked Dirichlet, y_a is almost lam itself: Var[Beta(2, 2)] = 1 / 20.
    sharp = gemix_labels(n, k, classes=[2, 0], maj=1e4, min=1e-3, beta=2.0, mode="paper", generator=13)
    assert abs(sharp[:, 2].var().item() - 1 / 20) < 0.003


def test_gemix_mode_error_lists_the_names():
    with pytest.raises(ValueError, match="'paper', 'blend', 'code', 'single'"):
        gemix_labels(4, 3, mode="both")
    with pytest.raises(ValueError, match="mode must be"):
        gemix_labels(4, 3, mode=None)
