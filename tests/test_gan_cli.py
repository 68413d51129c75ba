"""`genmix train-gan`, `synthesize` and `fid` from the command line: a run killed with SIGKILL
resumes from its newest checkpoint and keeps counting; synthetic sets have the promised layout."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from genmix.cli import main
from genmix.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    """28x28 grayscale, 2 imbalanced classes (MedMNIST-like): dark discs vs bright squares."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 48), ("val", 12), ("test", 12)):
        labels = (np.arange(n) % 3 == 0).astype(np.int64)  # class 1 is the rare one
        yy, xx = np.mgrid[:28, :28]
        images = rng.normal(128, 20, (n, 28, 28))
        for i, k in enumerate(labels):
            if k == 0:
                images[i][(yy - 14) ** 2 + (xx - 14) ** 2 < 49] = 40
            else:
                images[i][8:20, 8:20] = 220
        arrays[f"{split}_images"] = images.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, **arrays)
    return str(path)


def _train_cmd(data, out, *extra):
    return [sys.executable, "-m", "genmix", "train-gan", "--data", data, "--out", str(out), "--arch", "stylegan2",
            "--preset", "cpu-tiny", "--resolution", "16", "--batch", "8", "--no-progress", *extra]


def test_kill_9_then_resume_keeps_counting(tiny_npz, tmp_path):
    out = tmp_path / "gan"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(_train_cmd(tiny_npz, out, "--kimg", "1", "--snapshot-kimg", "0.016"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(list_checkpoints(out / "checkpoints")) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    ckpt = latest_checkpoint(out / "checkpoints")
    assert ckpt is not None, proc.stderr.read().decode()
    killed_at = load_checkpoint(ckpt)["trainer"]["cur_nimg"]
    assert 0 < killed_at < 1000
    assert not [p for p in (out / "checkpoints").iterdir() if ".tmp" in p.name and p.suffix == ".json"]

    # Resume for a little longer than the checkpoint: the counter continues from it.
    assert main(["train-gan", "--data", tiny_npz, "--out", str(out), "--resume", "--kimg",
                 str((killed_at + 32) / 1000), "--no-progress"]) == 0
    state = load_checkpoint(latest_checkpoint(out / "checkpoints"))["trainer"]
    assert state["cur_nimg"] == killed_at + 32
    assert state["step_index"] == (killed_at + 32) // 8
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["kimg"] == pytest.approx((killed_at + 32) / 1000)
    assert (out / "samples" / "latest.png").read_bytes()[:4] == b"\x89PNG"
    # A fresh run into the same directory is refused rather than overwriting it.
    assert main(["train-gan", "--data", tiny_npz, "--out", str(out), "--no-progress"]) == 1


@pytest.fixture(scope="module")
def trained_gan(tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan")
    assert main(["train-gan", "--data", tiny_npz, "--out", str(out), "--arch", "stylegan2", "--resolution", "16",
                 "--batch", "8", "--kimg", "0.032", "--no-progress"]) == 0
    return out


def test_synthesize_onehot_per_class(trained_gan, tmp_path):
    out = tmp_path / "syn.npz"
    assert main(["synthesize", "--gan", str(trained_gan), "--out", str(out), "--per-class", "5,3"]) == 0
    with np.load(out) as syn:
        assert syn["train_images"].shape == (8, 28, 28) and syn["train_images"].dtype == np.uint8
        assert syn["train_labels"].reshape(-1).tolist() == [0] * 5 + [1] * 3
        np.testing.assert_array_equal(syn["soft_labels"], np.eye(2, dtype=np.float32)[[0] * 5 + [1] * 3])
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_synthesize_balance_with_gemix_labels(trained_gan, tmp_path):
    out = tmp_path / "bal.npz"
    assert main(["synthesize", "--gan", str(trained_gan), "--out", str(out), "--balance", "--labels", "gemix",
                 "--psi", "0.7", "--seed", "3"]) == 0
    with np.load(out) as syn:
        soft, labels = syn["soft_labels"], syn["train_labels"].reshape(-1)
    # 32 majority vs 16 rare training images: 16 rare ones are generated to balance.
    assert len(labels) == 16 and (labels == 1).all()
    assert np.allclose(soft.sum(1), 1, atol=1e-5) and (soft.min(1) > 0).all() and (soft.argmax(1) == 1).all()
    again = tmp_path / "again.npz"
    main(["synthesize", "--gan", str(trained_gan), "--out", str(again), "--balance", "--labels", "gemix",
          "--psi", "0.7", "--seed", "3"])
    with np.load(again) as a, np.load(out) as b:
        np.testing.assert_array_equal(a["train_images"], b["train_images"])  # same seed, same set


def test_fid_command(trained_gan, tmp_path, capsys):
    out = tmp_path / "fid.json"
    assert main(["fid", "--gan", str(trained_gan), "--n", "24", "--extractor", "random", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["n_fake"] == 24 and report["overall"]["fid"] >= 0
    # Generated counts follow the real class frequencies (32:16).
    assert [row["n_fake"] for row in report["per_class"]] == [16, 8]
    assert "FID" in capsys.readouterr().out


def test_cli_errors(trained_gan, tmp_path, capsys):
    assert main(["synthesize", "--gan", str(tmp_path / "none"), "--out", str(tmp_path / "x.npz"), "--balance"]) == 1
    assert "is not a GAN run" in capsys.readouterr().err
    assert main(["synthesize", "--gan", str(trained_gan), "--out", str(tmp_path / "x.npz"), "--per-class", "1,2,3"]) == 2
    assert "one per class" in capsys.readouterr().err
    assert main(["train-gan", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "g"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.npz" in err
    with pytest.raises(SystemExit) as exc:
        main(["synthesize", "--gan", str(trained_gan), "--out", "x.npz"])  # neither --per-class nor --balance
    assert exc.value.code == 2
