"""The diffusion generator in the run harness: train, resume equal to an uninterrupted run,
and the generator-facing commands (synthesize, soft labels, evaluate-generator) unchanged."""

import json

import numpy as np
import pytest
import torch

from genmix.cli import main
from genmix.errors import UsageError
from genmix.training.checkpoint import latest_checkpoint, load_checkpoint
from genmix.training.generator import load_generator, sample_images, train_generator

TINY = dict(resolution=16, batch=8, kimg=0.048, snapshot_kimg=0.016)


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 48), ("val", 16), ("test", 16)):
        labels = np.arange(n) % 2
        x = rng.normal(60, 10, (n, 16, 16))
        x[labels == 1] += 120  # dark vs bright
        arrays[f"{split}_images"] = x.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, **arrays)
    return str(path)


def _train(data, out, **kw):
    overrides = dict(TINY, **kw.pop("overrides", {}))
    return train_generator(data, out, arch="diffusion", preset=kw.pop("preset", "cpu-tiny"), overrides=overrides,
                           progress=False, device="cpu", **kw)


def test_resume_equals_an_uninterrupted_run(tiny_npz, tmp_path):
    _train(tiny_npz, tmp_path / "full")
    _train(tiny_npz, tmp_path / "part", max_steps=2)
    _train(tiny_npz, tmp_path / "part", resume=True, preset=None)
    full = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))["trainer"]
    part = load_checkpoint(latest_checkpoint(tmp_path / "part" / "checkpoints"))["trainer"]
    assert full["cur_nimg"] == part["cur_nimg"] == 48
    for key, value in full["ema"].items():
        torch.testing.assert_close(part["ema"][key], value, rtol=0, atol=0, msg=key)
    info = json.loads((tmp_path / "part" / "run.json").read_text())
    assert info["kind"] == "diffusion" and info["complete"]
    assert (tmp_path / "full" / "samples" / "latest.png").read_bytes()[:4] == b"\x89PNG"


def test_generator_commands_work_on_a_diffusion_run(tiny_npz, tmp_path, capsys):
    gan = tmp_path / "diff"
    assert main(["train-generator", "--data", tiny_npz, "--out", str(gan), "--arch", "diffusion", "--preset",
                 "cpu-tiny", "--resolution", "16", "--batch", "8", "--kimg", "0.032", "--no-progress"]) == 0
    G, cfg = load_generator(gan)
    assert cfg.arch == "diffusion"
    a = sample_images(G, cfg, [0, 1, 1], seed=3)
    b = sample_images(G, cfg, [0, 1, 1], seed=3)
    assert a.shape == (3, 16, 16, 1) and a.dtype == np.uint8 and np.array_equal(a, b)  # seeded
    out = tmp_path / "syn.npz"
    assert main(["synthesize", "--gan", str(gan), "--out", str(out), "--per-class", "3", "--labels", "gemix",
                 "--seed", "1"]) == 0
    with np.load(out) as syn:
        assert syn["train_images"].shape == (6, 16, 16) and syn["soft_labels"].shape == (6, 2)
        assert len(syn["generator_train_digests"]) == 48
    # A resume keeps the family; GAN-only settings are refused for a diffusion run.
    assert main(["train-gan", "--data", tiny_npz, "--out", str(gan), "--resume", "--arch", "stylegan2",
                 "--no-progress"]) == 2
    with pytest.raises(UsageError, match="r1_gamma"):
        train_generator(tiny_npz, tmp_path / "x", arch="diffusion", overrides=dict(r1_gamma=1.0))
    from genmix.evaluation import evaluate_generator

    result = evaluate_generator(gan, n=16, extractor="random", run_tstr=False, kid_subsets=2)
    assert result["fid"] >= 0 and result["fid_floor"] >= 0 and result["precision"] is not None


def test_bad_sampling_settings_are_refused(tiny_npz, tmp_path):
    for bad in (dict(guidance=-1.0), dict(sample_steps=0)):
        with pytest.raises(UsageError, match=next(iter(bad))):
            _train(tiny_npz, tmp_path / "bad", overrides=bad)


def test_interpolation_strip_on_a_diffusion_run(tiny_npz, tmp_path):
    from genmix.training.synthesize import interpolation_strip

    _train(tiny_npz, tmp_path / "d", overrides=dict(kimg=0.016))
    path = interpolation_strip(tmp_path / "d", tmp_path / "strip.png", steps=4, rows_per_pair=1)
    assert path.read_bytes()[:4] == b"\x89PNG"
