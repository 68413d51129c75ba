"""The `oversample` control: real training images appended with exactly a synthetic set's count and
class balance, seeded; a first-class strategy of the registry and of `genmix experiment`, beside
the real-guided sets (edit, diffmix) the experiment draws from its diffusion generator."""

import json

import numpy as np
import pytest
import torch

from genmix.data.digests import image_digests
from genmix.mixing import append_synthetic, get_strategy, make_mixer, oversample_like

K = 3


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread avoids OpenMP stalls on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _real(rng):
    labels = np.array([0] * 30 + [1] * 6 + [2] * 4)
    return rng.integers(0, 256, (len(labels), 6, 6), dtype=np.uint8), labels


def _synthetic(rng, per_class=(9, 7, 5)):
    classes = rng.permutation(np.repeat(np.arange(K), per_class))
    return rng.integers(0, 256, (len(classes), 6, 6), dtype=np.uint8), np.eye(K, dtype=np.float32)[classes]


@pytest.mark.parametrize("balance", [False, True])
def test_appended_real_images_have_the_synthetic_sets_counts_and_balance(balance):
    rng = np.random.default_rng(0)
    images, labels = _real(rng)
    syn_images, syn_soft = _synthetic(rng, (30, 30, 30) if balance else (9, 7, 5))
    over_images, index = oversample_like(images, labels, syn_soft.argmax(1), rng=1)
    assert np.array_equal(labels[index], syn_soft.argmax(1))  # row by row, the synthetic row's class
    over_soft = np.eye(K, dtype=np.float32)[labels[index]]
    for seed in (0, 1, 2):
        kw = dict(ratio=None if balance else 0.4, balance=balance, rng=seed)
        syn_x, syn_y = append_synthetic(images, labels, syn_images, syn_soft, **kw)
        over_x, over_y = append_synthetic(images, labels, over_images, over_soft, **kw)
        n = len(images)
        assert len(over_x) == len(syn_x) and len(over_x) - n == (24 + 26 if balance else 16)
        assert np.array_equal(over_y[n:].sum(0), syn_y[n:].sum(0))  # the same class histogram
        assert np.array_equal(over_y[n:].argmax(1), syn_y[n:].argmax(1))  # and the same classes, row by row
        # Every appended image is a real training image of its class.
        real = dict(zip(image_digests(images).tolist(), labels.tolist()))
        appended = image_digests(over_x[n:]).tolist()
        assert all(real[d] == c for d, c in zip(appended, over_y[n:].argmax(1)))
    if balance:
        assert np.bincount(over_y.argmax(1)).tolist() == [30, 30, 30]


def test_oversampling_is_seeded_and_draws_with_replacement_within_a_class():
    rng = np.random.default_rng(0)
    images, labels = _real(rng)
    classes = np.repeat(np.arange(K), [20, 20, 20])
    a, ia = oversample_like(images, labels, classes, rng=5)
    b, ib = oversample_like(images, labels, classes, rng=5)
    _, ic = oversample_like(images, labels, classes, rng=6)
    assert np.array_equal(a, b) and np.array_equal(ia, ib) and not np.array_equal(ia, ic)
    assert np.array_equal(a, images[ia])
    assert len(np.unique(ia[classes == 2])) <= 4 < 20  # 4 real images of class 2 fill 20 rows
    with pytest.raises(ValueError, match="class 2"):
        oversample_like(images[:36], labels[:36], classes, rng=0)


def test_oversample_is_a_registered_control():
    spec = get_strategy("oversample")
    assert spec.needs_synthetic and spec.synthetic == "real" and not spec.generative and not spec.pooled
    assert get_strategy("edit").generative and get_strategy("edit").archs == ("diffusion",)
    assert get_strategy("diffmix").synthetic == "diffmix" and get_strategy("synth").archs is None
    x, y = torch.rand(4, 1, 6, 6) * 2 - 1, torch.tensor([0, 1, 2, 0])
    x_out, y_out = make_mixer("oversample", K)(x, y)
    assert torch.equal(x_out, x) and torch.equal(y_out, torch.eye(K)[y])


def test_experiment_defaults_match_the_documented_real_guided_defaults():
    from genmix.mixing import real_guided
    from genmix.pipeline import DEFAULT_STRATEGIES, ExperimentConfig

    cfg = ExperimentConfig()
    assert (cfg.edit_strength, cfg.diffmix_strength, cfg.diffmix_gamma) == (
        real_guided.EDIT_STRENGTH, real_guided.DIFFMIX_STRENGTH, real_guided.DIFFMIX_GAMMA)
    assert "oversample" in DEFAULT_STRATEGIES


def test_experiment_runs_the_control_and_the_real_guided_sets(tmp_path, monkeypatch):
    """none, oversample, synth, edit and diffmix in one experiment on 8-px images, with the
    diffusion generator kept to 8 px and one training step so the test stays fast."""
    import genmix.training.generator as generator
    import genmix.training.synthesize as synthesize
    from genmix.errors import UsageError
    from genmix.pipeline import make_config, run_experiment

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 24), ("val", 12), ("test", 12)):
        labels = np.array([0] * (n * 2 // 3) + [1] * (n // 6) + [2] * (n - n * 2 // 3 - n // 6))
        x = rng.normal(60, 10, (n, 8, 8)) + 60 * labels[:, None, None]
        arrays[f"{split}_images"] = x.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    data = tmp_path / "tiny.npz"
    np.savez(data, **arrays)
    real_train = generator.train_generator

    def small(*args, overrides=None, **kw):
        return real_train(*args, overrides=dict(overrides or {}, resolution=8, model_channels=8, kimg=0.008,
                                                snapshot_kimg=0.008), **kw)

    monkeypatch.setattr(generator, "train_generator", small)
    monkeypatch.setattr(synthesize, "interpolation_strip", lambda *a, **k: None)
    out = tmp_path / "exp"
    strategies = ["none", "oversample", "synth", "edit", "diffmix"]
    cfg = make_config("tiny", {}, dict(data=str(data), out=str(out), strategies=strategies, gan_arch="diffusion",
                                       fid=False, seeds=2, diffmix_gamma=0.5))
    report = run_experiment(cfg, progress=False, log=lambda _: None).read_text()

    def load(path):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}

    onehot, over = load(out / "synthetic" / "onehot.npz"), load(out / "oversample" / "oversample.npz")
    assert np.array_equal(over["train_labels"], onehot["train_labels"])  # the one-hot set's rows, class by class
    assert set(image_digests(over["train_images"]).tolist()) <= set(image_digests(arrays["train_images"]).tolist())
    for seed in (0, 1):  # what each classifier seed appends: the same count and classes as synth
        kw = dict(ratio=cfg.synthetic_share, rng=seed)
        _, syn_y = append_synthetic(arrays["train_images"], arrays["train_labels"], onehot["train_images"],
                                    onehot["soft_labels"], **kw)
        _, over_y = append_synthetic(arrays["train_images"], arrays["train_labels"], over["train_images"],
                                     over["soft_labels"], **kw)
        assert np.array_equal(syn_y, over_y)
        run_cfg = json.loads((out / "runs" / "oversample" / f"seed{seed}" / "config.json").read_text())
        assert run_cfg["mix"] == "oversample" and run_cfg["synthetic"].endswith("oversample/oversample.npz")
    for kind in ("edit", "diffmix"):
        syn = load(out / kind / f"{kind}.npz")
        assert np.array_equal(np.bincount(syn["condition_class"]), np.bincount(onehot["train_labels"][:, 0]))
        assert json.loads((out / "runs" / kind / "seed0" / "config.json").read_text())["mix"] == kind
    diffmix = load(out / "diffmix" / "diffmix.npz")
    settings = json.loads(str(diffmix["settings"]))
    assert settings["strength"] == 0.5 and settings["gamma"] == 0.5
    assert np.allclose(diffmix["soft_labels"].max(1), 0.5 ** 0.5)

    # The label check: each set judged by the none run of seed 0, numbers straight from its predictions.
    from genmix.training.classifier import load_classifier, predict

    judge, _ = load_classifier(out / "runs" / "none" / "seed0")
    for kind, syn in (("edit", load(out / "edit" / "edit.npz")), ("diffmix", diffmix)):
        check = json.loads((out / kind / "label-check" / "label_check.json").read_text())
        src = arrays["train_labels"][syn["source_index"], 0]
        p = predict(judge, syn["train_images"][..., None])
        for row in check["rows"]:
            m = (src == row["source"]) & (syn["condition_class"] == row["target"])
            assert row["n"] == m.sum() > 0 and (row["source"] == row["target"]) == (kind == "edit")
            assert row["p_target"] == pytest.approx(p[m, row["target"]].mean())
            assert row["label_target"] == pytest.approx(1.0 if kind == "edit" else 0.5 ** 0.5)
            val = arrays["val_labels"][:, 0] == row["target"]
            p_val = predict(judge, arrays["val_images"][val][..., None])
            assert row["p_target_reference"] == pytest.approx(p_val[:, row["target"]].mean())
    assert "## Do the real-guided labels hold?" in report and "| diffmix, strength 0.5, gamma 0.5 | " in report

    assert report.split("\n")[2].startswith("**Verdict:**")
    assert "| synth | " in report and "| oversample | " in report.split("Verdicts (")[1]
    assert (out / "runs" / "diffmix" / "seed1" / "metrics.json").is_file()
    # A finished experiment reruns nothing; bad real-guided settings are refused up front.
    stamp = (out / "edit" / "edit.npz").stat().st_mtime_ns
    run_experiment(cfg, progress=False, log=lambda _: None)
    assert (out / "edit" / "edit.npz").stat().st_mtime_ns == stamp
    with pytest.raises(UsageError, match="diffmix_gamma"):
        make_config("tiny", {}, dict(data=str(data), out=str(out), strategies=strategies, gan_arch="diffusion",
                                     diffmix_gamma=0))
    with pytest.raises(UsageError, match="edit.*needs a diffusion generator"):
        make_config("tiny", {}, dict(data=str(data), out=str(out), strategies=["none", "edit"], gan_arch="stylegan2"))
