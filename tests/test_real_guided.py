"""Real-guided diffusion sets ("edit", "diffmix"): the strength's end points, the soft-label rule,
class-balanced targets, seeded and resumable synthesis, and bad values refused."""

import json

import numpy as np
import pytest
import torch

from genmix.cli import main
from genmix.errors import UsageError
from genmix.mixing import SyntheticPool, append_synthetic, diffmix_labels, make_mixer, real_guided_plan
from genmix.models.diffusion import DiffusionUNet, EDMPrecond, edm_edit, edm_sample, edm_sigma_steps, edm_strength_sigma
from genmix.training.generator import load_generator, sample_images, train_generator
from genmix.training.synthesize import synthesize_from_real


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread avoids OpenMP stalls on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_denoiser(label_dim=3):
    """An 8-px UNet whose zero-initialised layers get small random weights, so the label and the
    image both change the output."""
    torch.manual_seed(0)
    unet = DiffusionUNet(8, 1, label_dim, model_channels=8, channel_mult=(1, 2), num_blocks=1, attn_resolutions=())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in unet.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return EDMPrecond(unet).eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A diffusion run of one step on 8-px images of 3 classes (16:4:4 training images)."""
    root = tmp_path_factory.mktemp("real_guided")
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        labels = np.array([0] * (n * 2 // 3) + [1] * (n // 6) + [2] * (n - n * 2 // 3 - n // 6))
        x = rng.normal(60, 10, (n, 8, 8)) + 60 * labels[:, None, None]
        arrays[f"{split}_images"] = x.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    data = root / "tiny.npz"
    np.savez(data, **arrays)
    train_generator(str(data), root / "run", arch="diffusion", preset="cpu-tiny", progress=False, device="cpu",
                    overrides=dict(resolution=8, batch=8, kimg=0.008, snapshot_kimg=0.008, model_channels=8))
    return root / "run", arrays


# ------------------------------------------------------------------------------- the sampler

def test_edit_strength_end_points():
    d = tiny_denoiser()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    other = torch.rand(4, 1, 8, 8) * 2 - 1
    labels = torch.eye(3)[[0, 1, 2, 1]]
    # s = 0: no noise, no step: the image itself.
    assert torch.equal(edm_edit(d, x, labels, strength=0.0, num_steps=4, seed=3), x)
    # s = 1: the image is not used; the same seed gives plain label-conditioned sampling.
    a = edm_edit(d, x, labels, strength=1.0, num_steps=4, seed=3)
    assert torch.equal(a, edm_edit(d, other, labels, strength=1.0, num_steps=4, seed=3))
    assert torch.equal(a, edm_sample(d, labels, num_steps=4, seed=3))
    # In between the output depends on the image, and stays closer to it as s falls.
    low, high = (edm_edit(d, x, labels, strength=s, num_steps=4, seed=3) for s in (0.2, 0.5))
    assert not torch.equal(high, edm_edit(d, other, labels, strength=0.5, num_steps=4, seed=3))
    assert (low - x).abs().mean() < (high - x).abs().mean() < (a - x).abs().mean()
    # Pieces with their first index equal the whole (cut at a multiple of batch).
    pieces = torch.cat([edm_edit(d, x[:2], labels[:2], strength=0.5, num_steps=4, seed=3, batch=2),
                        edm_edit(d, x[2:], labels[2:], strength=0.5, num_steps=4, seed=3, batch=2, first_index=2)])
    assert torch.equal(pieces, edm_edit(d, x, labels, strength=0.5, num_steps=4, seed=3, batch=2))


def test_strength_maps_onto_the_samplers_schedule():
    steps = edm_sigma_steps(18)
    assert edm_strength_sigma(0.0) == 0.0
    assert edm_strength_sigma(1.0) == pytest.approx(float(steps[0]))
    assert edm_strength_sigma(1e-9) == pytest.approx(0.002, rel=1e-6)
    sigmas = [edm_strength_sigma(s) for s in np.linspace(0.05, 1, 20)]
    assert all(a < b for a, b in zip(sigmas, sigmas[1:]))
    assert edm_strength_sigma(0.5) == pytest.approx(2.515, abs=1e-3)
    # The schedule is even in sigma^(1/rho), so s = i/(n-1) from the quiet end is step n-1-i.
    assert edm_strength_sigma(12 / 17) == pytest.approx(float(steps[5]))


# ------------------------------------------------------------------------------ label rules

def test_diffmix_soft_label_formula():
    y = diffmix_labels([0, 2, 1], [1, 0, 1], 3, strength=0.5, gamma=2.0)  # s^gamma = 0.25
    np.testing.assert_allclose(y, [[0.75, 0.25, 0], [0.25, 0, 0.75], [0, 1, 0]])
    np.testing.assert_allclose(diffmix_labels([0], [1], 2, strength=0.49, gamma=1.0), [[0.51, 0.49]])
    np.testing.assert_allclose(diffmix_labels([0], [1], 2, strength=0.0, gamma=0.5), [[1, 0]])
    np.testing.assert_allclose(diffmix_labels([0], [1], 2, strength=1.0, gamma=3.0), [[0, 1]])
    assert y.dtype == np.float32 and np.allclose(y.sum(1), 1)


def test_class_balanced_targets_never_the_source():
    labels = np.array([0] * 40 + [1] * 8 + [2] * 2)
    source, target, soft = real_guided_plan("diffmix", labels, [30, 30, 30], strength=0.5, gamma=1.0, rng=0)
    assert np.bincount(target, minlength=3).tolist() == [30, 30, 30]  # rare classes as often as common ones
    assert not (labels[source] == target).any()
    np.testing.assert_allclose(soft, diffmix_labels(labels[source], target, 3, 0.5, 1.0))
    # Source classes are drawn uniformly from the other classes, not by their frequency.
    for t in range(3):
        counts = np.bincount(labels[source[target == t]], minlength=3)
        assert counts[t] == 0 and min(c for k, c in enumerate(counts) if k != t) >= 8
    # Each source class's images are all used before any is used again.
    used = np.bincount(source[labels[source] == 2], minlength=50)[48:]
    assert used.max() - used.min() <= 1
    # edit: every row starts from an image of its own class.
    source, cond, soft = real_guided_plan("edit", labels, [3, 3, 3], strength=0.5, rng=0)
    assert (labels[source] == cond).all() and np.array_equal(soft, np.eye(3, dtype=np.float32)[cond])
    with pytest.raises(ValueError, match="other than the target"):
        real_guided_plan("diffmix", np.zeros(5, np.int64), [3, 0], strength=0.5, rng=0)


# -------------------------------------------------------------------------------- the sets

def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_edit_sets_at_the_end_points(run, tmp_path):
    run_dir, arrays = run
    real = arrays["train_images"]
    zero = _load(synthesize_from_real(run_dir, tmp_path / "s0.npz", mode="edit", strength=0.0, per_class=3,
                                      seed=1, preview=False)["path"])
    assert np.array_equal(zero["train_images"], real[zero["source_index"]])  # exactly the real images
    assert np.array_equal(zero["train_labels"][:, 0], arrays["train_labels"][zero["source_index"], 0])
    one = _load(synthesize_from_real(run_dir, tmp_path / "s1.npz", mode="edit", strength=1.0, per_class=3,
                                     seed=1, preview=False)["path"])
    G, cfg = load_generator(run_dir)
    plain = sample_images(G, cfg, one["condition_class"], seed=1)[..., 0]
    assert np.array_equal(one["train_images"], plain)  # the label alone, with the set's seed
    assert json.loads(str(one["settings"]))["strength"] == 1.0


def test_diffmix_set_labels_and_balance(run, tmp_path):
    run_dir, arrays = run
    summary = synthesize_from_real(run_dir, tmp_path / "dm.npz", mode="diffmix", strength=0.6, gamma=0.5,
                                   ratio=0.5, seed=2, chunk=8)
    syn = _load(summary["path"])
    src = arrays["train_labels"][syn["source_index"], 0]
    tgt = syn["condition_class"]
    assert summary["per_class"] == [4, 4, 4] and np.bincount(tgt).tolist() == [4, 4, 4]  # 0.5 x 24, balanced
    assert not (src == tgt).any()
    w = 0.6 ** 0.5
    np.testing.assert_allclose(syn["soft_labels"], (1 - w) * np.eye(3)[src] + w * np.eye(3)[tgt], rtol=1e-6)
    assert np.array_equal(syn["train_labels"][:, 0], tgt)  # s^gamma >= 0.5: the target's class
    assert syn["train_images"].shape == (12, 8, 8) and syn["train_images"].dtype == np.uint8
    assert len(syn["generator_train_digests"]) == 24
    # The set is an ordinary synthetic set: appended, or pooled for GenMix/GeMix-style blending.
    images, soft = append_synthetic(arrays["train_images"], arrays["train_labels"], syn["train_images"],
                                    syn["soft_labels"], ratio=0.25, rng=0)
    assert images.shape[0] == 30 and np.allclose(soft.sum(1), 1)
    pool = SyntheticPool.from_npz(summary["path"], 3)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    x_mix, y_mix = make_mixer("gemix", 3, synthetic=pool, generator=torch.Generator().manual_seed(0))(x, torch.zeros(5, dtype=torch.long))
    assert x_mix.shape == x.shape and torch.allclose(y_mix.sum(1), torch.ones(5))


def test_label_agreement_on_fixed_numbers():
    """Two diffmix rows 0 -> 1 (label 0.5 on class 1) that the judge still sees as class 0, one
    1 -> 0 row it sees as class 0, and an edit row 1 -> 1 that keeps its class."""
    from genmix.evaluation.real_guided import label_agreement

    soft = [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0]]
    p_edit = [[0.9, 0.1], [0.7, 0.3], [0.6, 0.4], [0.2, 0.8]]
    p_src = [[0.95, 0.05], [0.95, 0.05], [0.1, 0.9], [0.1, 0.9]]
    rows = label_agreement(soft, [0, 0, 1, 1], [1, 1, 0, 1], p_edit, p_src)
    assert [(r["source"], r["target"], r["n"]) for r in rows] == [(0, 1, 2), (1, 0, 1), (1, 1, 1)]
    assert rows[0]["label_target"] == 0.5 and rows[0]["p_target"] == pytest.approx(0.2)
    assert rows[0]["p_target_source"] == pytest.approx(0.05) and rows[0]["as_target"] == 0.0
    assert rows[1]["p_target"] == pytest.approx(0.6) and rows[1]["as_target"] == 1.0
    assert rows[1]["as_target_source"] == 0.0
    assert rows[2]["label_target"] == 1.0 and rows[2]["p_target"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="one row per image"):
        label_agreement(soft, [0, 0, 1], [1, 1, 0, 1], p_edit, p_src)


def test_seeded_and_resumable(run, tmp_path, monkeypatch):
    run_dir, _ = run
    kw = dict(mode="diffmix", per_class=4, chunk=4, preview=False)
    full = _load(synthesize_from_real(run_dir, tmp_path / "full.npz", seed=5, **kw)["path"])
    again = _load(synthesize_from_real(run_dir, tmp_path / "again.npz", seed=5, **kw)["path"])
    other = _load(synthesize_from_real(run_dir, tmp_path / "other.npz", seed=6, **kw)["path"])
    for key in full:
        assert np.array_equal(full[key], again[key]), key
    assert not np.array_equal(full["train_images"], other["train_images"])

    # Interrupted after one chunk of three: no file yet, one chunk kept ...
    out = tmp_path / "part.npz"
    first = synthesize_from_real(run_dir, out, seed=5, max_chunks=1, **kw)
    assert not first["complete"] and first["chunks_done"] == 1 and not out.exists()
    # ... and the rerun makes only the two missing chunks, giving the uninterrupted set.
    import genmix.models.diffusion as diffusion

    real_edit, calls = diffusion.edm_edit, []
    monkeypatch.setattr(diffusion, "edm_edit", lambda *a, **k: calls.append(k["first_index"]) or real_edit(*a, **k))
    assert synthesize_from_real(run_dir, out, seed=5, **kw)["complete"]
    assert calls == [4, 8]
    resumed = _load(out)
    for key in full:
        assert np.array_equal(full[key], resumed[key]), key
    assert not (tmp_path / "part.npz.parts").exists()
    # Chunks of other settings are not reused.
    synthesize_from_real(run_dir, out, seed=5, max_chunks=1, **kw)
    calls.clear()
    synthesize_from_real(run_dir, out, seed=5, **dict(kw, per_class=None, ratio=0.5), strength=0.7)
    assert calls == [0, 4, 8]


def test_sources_must_be_the_generators_training_images(run):
    run_dir, arrays = run
    with pytest.raises(UsageError, match="not among the images the generator"):
        synthesize_from_real(run_dir, "unused.npz", mode="edit", per_class=1,
                             data=(arrays["test_images"], arrays["test_labels"]))


def test_bad_values(run, tmp_path, capsys):
    run_dir, _ = run
    out = str(tmp_path / "x.npz")
    base = ["synthesize", "--gan", str(run_dir), "--out", out, "--per-class", "1"]
    for mode, flags, name in (("edit", ["--strength", "1.5"], "strength"), ("edit", ["--strength", "-0.1"], "strength"),
                              ("diffmix", ["--strength", "nan"], "strength"), ("diffmix", ["--gamma", "0"], "gamma"),
                              ("diffmix", ["--gamma", "-1"], "gamma"), ("edit", ["--gamma", "2"], "gamma")):
        assert main(base + ["--from-real", mode] + flags) == 2
        err = capsys.readouterr().err
        assert err.startswith("genmix: error: ") and err.count("\n") == 1 and name in err, err
    for bad in (dict(strength=1.5), dict(strength=-0.1), dict(gamma=0.0), dict(gamma=-2.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            synthesize_from_real(run_dir, out, mode="diffmix", per_class=1, **bad)
    with pytest.raises(ValueError, match="strength"):
        edm_edit(tiny_denoiser(), torch.zeros(1, 1, 8, 8), torch.eye(3)[:1], strength=2.0)
    with pytest.raises(ValueError, match="gamma"):
        diffmix_labels([0], [1], 2, strength=0.5, gamma=0)
    assert not (tmp_path / "x.npz").exists()


def test_cli_writes_real_guided_and_oversampled_sets(run, tmp_path, capsys):
    run_dir, arrays = run
    out = tmp_path / "edit.npz"
    assert main(["synthesize", "--gan", str(run_dir), "--out", str(out), "--from-real", "edit", "--seed", "3"]) == 0
    assert "12 images [4, 4, 4], strength 0.5" in capsys.readouterr().out  # default ratio 0.5 of 24
    assert out.is_file() and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    over = tmp_path / "over.npz"
    assert main(["synthesize", "--out", str(over), "--from-real", "oversample", "--data", str(data), "--per-class",
                 "2,3,4"]) == 0
    syn = _load(over)
    assert syn["train_labels"][:, 0].tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert np.array_equal(syn["train_images"], arrays["train_images"][syn["source_index"]])
    assert main(["synthesize", "--out", str(over), "--from-real", "oversample", "--data", str(data),
                 "--strength", "0.5"]) == 2
    assert main(["synthesize", "--out", str(over), "--from-real", "edit"]) == 2  # edit needs --gan
    assert main(["synthesize", "--gan", str(run_dir), "--out", str(over), "--per-class", "1",
                 "--strength", "0.5"]) == 2  # --strength without --from-real
