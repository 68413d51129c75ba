"""Mixing strategies: shapes, labels on the simplex, reproducibility, and each strategy's rule."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genmix.mixing import (
    STRATEGIES,
    BatchMixer,
    SyntheticPool,
    append_synthetic,
    class_balanced_sampler,
    make_mixer,
)
from genmix.mixing.augmix import OPERATIONS, jensen_shannon

K = 3


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def make_pool(n=24, size=8, channels=1, soft=False, classes=None):
    g = seeded(123)
    images = torch.rand(n, channels, size, size, generator=g) * 2 - 1
    if classes is None:
        classes = torch.arange(n) % K
    labels = F.one_hot(torch.as_tensor(classes), K).float()
    if soft:
        labels = 0.6 * labels + 0.4 * torch.distributions.Dirichlet(torch.ones(K)).sample((n,))
    return SyntheticPool(images, labels)


def real_batch(n=6, size=8, channels=1):
    g = seeded(7)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1, torch.arange(n) % K


def mixer_for(strategy, pool=None, seed=0, **kw):
    return make_mixer(strategy, K, synthetic=pool or make_pool(), generator=seeded(seed), **kw)


def assert_simplex(y):
    assert y.dtype == torch.float32
    assert (y >= 0).all()
    torch.testing.assert_close(y.sum(dim=1), torch.ones(y.shape[0]))


# ------------------------------------------------------------------------- every strategy

@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shapes_simplex_and_reproducible(strategy):
    x, y = real_batch()
    out = []
    for _ in range(2):
        mixer = mixer_for(strategy)
        assert isinstance(mixer, BatchMixer) and mixer.name == strategy
        out.append(mixer(x, y))
    (x_mix, y_soft), (x_again, y_again) = out
    n = x.shape[0] * mixer.batch_multiplier
    assert x_mix.shape == (n,) + x.shape[1:] and x_mix.dtype == x.dtype
    assert y_soft.shape == (n, K)
    assert_simplex(y_soft)
    assert torch.equal(x_mix, x_again) and torch.equal(y_soft, y_again)
    # Soft input labels work the same way.
    x_soft, y_soft2 = mixer(x, F.one_hot(y, K).float() * 0.5 + 0.5 / K)
    assert x_soft.shape == x_mix.shape
    assert_simplex(y_soft2)
    loss = mixer.loss(torch.randn(n, K, requires_grad=True), y_soft)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_different_seeds_differ():
    x, y = real_batch()
    a, _ = mixer_for("mixup", seed=0)(x, y)
    b, _ = mixer_for("mixup", seed=1)(x, y)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("strategy", ["none", "synth"])
def test_identity_strategies(strategy):
    x, y = real_batch()
    x_out, y_out = mixer_for(strategy)(x, y)
    assert torch.equal(x_out, x)
    assert torch.equal(y_out, F.one_hot(y, K).float())


# ------------------------------------------------------------------------------ mixup

def test_mixup_rule():
    x, y = real_batch(n=16)
    mixer = mixer_for("mixup", alpha=0.4)
    x_mix, y_soft = mixer(x, y)
    lam, index = mixer.last_params["lam"], mixer.last_params["index"]
    assert torch.equal(index.sort().values, torch.arange(16))
    assert ((lam >= 0) & (lam <= 1)).all()
    w = lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(x_mix, w * x + (1 - w) * x[index])
    onehot = F.one_hot(y, K).float()
    torch.testing.assert_close(y_soft, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[index])


# ------------------------------------------------------------------------------ cutmix

@pytest.mark.parametrize("per_sample", [False, True])
def test_cutmix_box_and_label_weight(per_sample):
    x, y = real_batch(n=8, size=12)
    mixer = mixer_for("cutmix", per_sample=per_sample)
    for _ in range(5):
        x_mix, y_soft = mixer(x, y)
        index, box = mixer.last_params["index"], mixer.last_params["box"]
        if not per_sample:
            assert (box == box[0]).all()
        areas = []
        for i, (y0, y1, x0, x1) in enumerate(box.tolist()):
            inside = torch.zeros(12, 12, dtype=torch.bool)
            inside[y0:y1, x0:x1] = True
            assert torch.equal(x_mix[i][:, ~inside], x[i][:, ~inside])
            assert torch.equal(x_mix[i][:, inside], x[index[i]][:, inside])
            areas.append((y1 - y0) * (x1 - x0) / 144)
        area = torch.tensor(areas)[:, None]
        onehot = F.one_hot(y, K).float()
        torch.testing.assert_close(y_soft, (1 - area) * onehot + area * onehot[index])
        torch.testing.assert_close(mixer.last_params["lam"], 1 - area[:, 0])


# ------------------------------------------------------------------------------ augmix

def test_augmix_views_and_loss():
    x, y = real_batch(n=4, size=16)
    mixer = mixer_for("augmix")
    assert mixer.batch_multiplier == 3
    x_mix, y_soft = mixer(x, y)
    assert torch.equal(x_mix[:4], x)
    assert not torch.equal(x_mix[4:8], x) and not torch.equal(x_mix[4:8], x_mix[8:])
    assert x_mix.min() >= -1 - 1e-5 and x_mix.max() <= 1 + 1e-5
    assert torch.equal(y_soft, F.one_hot(y, K).float().repeat(3, 1))
    logits = torch.randn(12, K, requires_grad=True)
    loss = mixer.loss(logits, y_soft)
    assert torch.isfinite(loss)
    loss.backward()
    with pytest.raises(ValueError, match="logits"):
        mixer.loss(torch.randn(10, K), y_soft)


def test_jsd_zero_for_identical_views():
    logits = torch.randn(5, K)
    assert jensen_shannon(logits, logits, logits).abs().item() < 1e-6
    assert jensen_shannon(logits, logits + torch.randn(5, K), logits).item() > 1e-4
    mixer = mixer_for("augmix")
    y_soft = F.one_hot(torch.arange(5) % K, K).float()
    torch.testing.assert_close(mixer.loss(logits.repeat(3, 1), y_soft),
                               F.cross_entropy(logits, torch.arange(5) % K), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_augmix_operations_keep_range(op):
    u = torch.rand(3, 2, 10, 10, generator=seeded(3))
    out = OPERATIONS[op](u, torch.full((3, 1, 1, 1), 0.3), torch.tensor([1.0, -1.0, 1.0]))
    assert out.shape == u.shape
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


# ---------------------------------------------------------------------- genmix / gemix

def test_genmix_lambda_skewed_towards_real_images():
    alpha = 0.3
    x, y = torch.zeros(4000, 1, 2, 2), torch.arange(4000) % K
    mixer = make_mixer("genmix", K, alpha=alpha, synthetic=make_pool(size=2), generator=seeded())
    mixer(x, y)
    lam = mixer.last_params["lam"]
    assert abs(lam.mean().item() - alpha / (alpha + 1)) < 0.02
    # Beta(0.3, 1): P(lam < 0.1) = 0.1 ** 0.3 ~ 0.50
    assert abs((lam < 0.1).float().mean().item() - 0.1 ** alpha) < 0.03


def test_genmix_class_matching_and_rule():
    pool = make_pool(n=12, classes=[0, 1] * 6)  # no synthetic image of class 2
    x, y = real_batch(n=9)
    mixer = mixer_for("genmix", pool=pool)
    x_mix, y_soft = mixer(x, y)
    index, lam = mixer.last_params["index"], mixer.last_params["lam"]
    has_class = y < 2
    assert torch.equal(pool.classes[index][has_class], y[has_class])
    w = lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(x_mix, w * pool.images[index] + (1 - w) * x)
    torch.testing.assert_close(y_soft, lam[:, None] * pool.soft_labels[index]
                               + (1 - lam[:, None]) * F.one_hot(y, K).float())


def test_gemix_uses_soft_labels_and_random_pairs():
    pool = make_pool(n=30, soft=True)
    x, y = real_batch(n=12)
    y = torch.zeros_like(y)
    mixer = mixer_for("gemix", pool=pool)
    _, y_soft = mixer(x, y)
    index, lam = mixer.last_params["index"], mixer.last_params["lam"]
    assert (pool.classes[index] != 0).any()  # partners are not class-matched
    expected = lam[:, None] * pool.soft_labels[index] + (1 - lam[:, None]) * F.one_hot(y, K).float()
    torch.testing.assert_close(y_soft, expected)
    assert ((y_soft[:, 1:] > 0).sum(dim=1) == 2).any()  # soft synthetic labels show through


def test_pool_sample_and_resolution_mismatch():
    pool = make_pool(n=12)
    images, labels = pool.sample(5, seeded(), like_labels=torch.tensor([2, 2, 1, 0, 2]))
    assert images.shape == (5, 1, 8, 8)
    assert torch.equal(labels.argmax(1), torch.tensor([2, 2, 1, 0, 2]))
    x, y = real_batch(size=10)
    with pytest.raises(ValueError, match="resolution"):
        mixer_for("genmix", pool=pool)(x, y)


# ------------------------------------------------------------------------------ synth

def test_append_synthetic_ratio():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    syn = rng.integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
    syn_soft = np.eye(K, dtype=np.float32)[np.arange(8) % K]
    out, soft = append_synthetic(images, labels, syn, syn_soft, ratio=0.5, rng=0)
    assert out.shape == (15, 4, 4, 1) and soft.shape == (15, K) and out.dtype == np.uint8
    assert np.array_equal(out[:10], images)
    assert np.array_equal(soft[:10], np.eye(K)[labels])
    np.testing.assert_allclose(soft.sum(1), 1)
    again, _ = append_synthetic(images, labels[:, None], syn, syn_soft, ratio=0.5, rng=0)
    assert np.array_equal(out, again)
    assert len(append_synthetic(images, labels, syn, syn_soft, ratio=None, rng=0)[0]) == 18
    with pytest.raises(ValueError, match="ratio"):
        append_synthetic(images, labels, syn, syn_soft, ratio=1.0, rng=0)


def test_append_synthetic_balance():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 4, 4), dtype=np.uint8)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    syn = rng.integers(0, 256, (12, 4, 4), dtype=np.uint8)
    syn_soft = np.eye(K, dtype=np.float32)[np.arange(12) % K]
    out, soft = append_synthetic(images, labels, syn, syn_soft, balance=True, rng=rng)
    assert len(out) == 15
    assert np.array_equal(np.bincount(soft.argmax(1), minlength=K), [5, 5, 5])
    with pytest.raises(ValueError, match="balance"):
        append_synthetic(images, labels, syn[:6], syn_soft[:6], balance=True, rng=rng)


def test_class_balanced_sampler():
    labels = np.array([0] * 90 + [1] * 10)
    draws = list(class_balanced_sampler(labels, generator=seeded()))
    assert len(draws) == 100
    assert 30 <= sum(d >= 90 for d in draws) <= 70
    assert draws == list(class_balanced_sampler(labels, generator=seeded()))
    sampler = class_balanced_sampler(F.one_hot(torch.as_tensor(labels), 2).float())
    torch.testing.assert_close(sampler.weights[0] * 90, sampler.weights[-1] * 10)


# --------------------------------------------------------------------------- npz round trip

def test_pool_from_npz(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    labels = np.array([[0], [1], [2], [0], [1], [2]])
    path = tmp_path / "syn.npz"
    np.savez(path, train_images=images, train_labels=labels)
    pool = SyntheticPool.from_npz(path, K)
    assert len(pool) == 6 and pool.num_classes == K
    torch.testing.assert_close(pool.images, torch.from_numpy(images).float()[:, None] / 127.5 - 1)
    assert torch.equal(pool.soft_labels, F.one_hot(torch.from_numpy(labels[:, 0]), K).float())

    rgb = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    soft = rng.dirichlet(np.ones(K), 6).astype(np.float32)
    np.savez(path, train_images=rgb, train_labels=labels, soft_labels=soft)
    pool = SyntheticPool.from_npz(path, K, resolution=16)
    assert pool.images.shape == (6, 3, 16, 16)
    assert pool.images.min() >= -1 and pool.images.max() <= 1
    torch.testing.assert_close(pool.soft_labels, torch.from_numpy(soft))
    with pytest.raises(ValueError, match="soft_labels"):
        SyntheticPool.from_npz(path, K + 1)


# ------------------------------------------------------------------------------- errors

def test_errors():
    x, y = real_batch()
    with pytest.raises(ValueError, match="synthetic"):
        make_mixer("genmix", K)
    with pytest.raises(ValueError, match="synthetic"):
        make_mixer("gemix", K, synthetic=None)
    with pytest.raises(ValueError, match="mixup.*gemix"):
        make_mixer("manifold_mixup", K)
    with pytest.raises(ValueError, match="alpha"):
        make_mixer("mixup", K, alpha=0.0)
    with pytest.raises(ValueError, match="pool"):
        make_mixer("genmix", K + 1, synthetic=make_pool())
    mixer = make_mixer("mixup", K)
    with pytest.raises(ValueError, match="y"):
        mixer(x, y[:, None])
    with pytest.raises(ValueError, match="y"):
        mixer(x, torch.rand(6, K + 1))
    with pytest.raises(ValueError, match="y"):
        mixer(x, torch.full((6,), K))
    with pytest.raises(ValueError, match="x"):
        mixer(x[0], y)
    with pytest.raises(TypeError, match="x"):
        mixer(x.to(torch.uint8), y)


@pytest.mark.cuda
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_on_gpu(strategy):
    x, y = real_batch()
    pool = make_pool().to("cuda")
    x_mix, y_soft = make_mixer(strategy, K, synthetic=pool, generator=seeded())(x.cuda(), y.cuda())
    assert x_mix.is_cuda and y_soft.is_cuda
    assert_simplex(y_soft.cpu())


def test_registry_states_each_strategy_once():
    from genmix.mixing import get_strategy, register
    from genmix.mixing.registry import Strategy

    assert get_strategy("genmix").default_alpha == 0.3 and get_strategy("genmix").synthetic == "onehot"
    assert get_strategy("gemix").synthetic == "soft" and get_strategy("gemix").pooled
    assert get_strategy("synth").needs_synthetic and not get_strategy("synth").pooled
    assert get_strategy("none").default_alpha is None and not get_strategy("mixup").needs_synthetic
    with pytest.raises(ValueError, match="already registered"):
        register(Strategy("mixup", BatchMixer))
    with pytest.raises(ValueError, match="unknown mixing strategy"):
        get_strategy("manifold_mixup")


def test_mixing_package_has_no_import_cycle():
    import subprocess
    import sys

    # base.py must not need the strategy modules (they build on it): importing it alone works.
    code = "import genmix.mixing.base as b; assert not hasattr(b, 'make_mixer')"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
