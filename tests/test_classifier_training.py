"""Classifier training and evaluation: every strategy trains, seeds reproduce, resume continues
exactly, metrics.json has the documented keys, and bad input fails cleanly."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genmix.cli import main
from genmix.training.classifier import ClassifierConfig, load_classifier, train_classifier

DESIGN_KEYS = {"accuracy", "balanced_accuracy", "macro_f1", "auc", "ece", "nll", "per_class",
               "confusion_matrix", "split", "n", "model", "mix", "seed"}


def _images(rng, labels, size=16):
    # Class k: a bright square in quadrant k on a noisy background, learnable in one epoch.
    x = rng.normal(60, 20, (len(labels), size, size)).clip(0, 255)
    h = size // 2
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 2)
        x[i, r * h:(r + 1) * h, c * h:(c + 1) * h] += 120
    return x.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 96), ("val", 30), ("test", 30)):
        labels = np.arange(n) % 3
        arrays[f"{split}_images"] = _images(rng, labels)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    path = root / "tiny.npz"
    np.savez(path, **arrays)
    syn_labels = np.arange(60) % 3
    soft = np.eye(3, dtype=np.float32)[syn_labels] * 0.8 + 0.2 / 3
    syn = root / "syn.npz"
    np.savez(syn, train_images=_images(rng, syn_labels), train_labels=syn_labels.reshape(-1, 1), soft_labels=soft)
    return str(path), str(syn)


def _cfg(**kw):
    base = dict(model="small_cnn", epochs=1, batch=16, lr=2e-3, seed=3)
    base.update(kw)
    return ClassifierConfig(**base)


@pytest.mark.parametrize("mix", ["none", "mixup", "cutmix", "augmix", "synth", "genmix", "gemix"])
def test_every_strategy_trains(tiny_data, tmp_path, mix):
    data, syn = tiny_data
    summary = train_classifier(data, tmp_path, _cfg(mix=mix, synthetic=syn if mix in ("synth", "genmix", "gemix") else None),
                               progress=False)
    assert summary["epoch"] == 1 and np.isfinite(summary["last"]["train_loss"])
    model, cfg = load_classifier(tmp_path)
    assert cfg.mix == mix and cfg.num_classes == 3


def test_same_seed_same_weights(tiny_data, tmp_path):
    data, _ = tiny_data
    a = train_classifier(data, tmp_path / "a", _cfg(mix="mixup", epochs=2), progress=False)
    b = train_classifier(data, tmp_path / "b", _cfg(mix="mixup", epochs=2), progress=False)
    wa, wb = load_file(str(tmp_path / "a/best.safetensors")), load_file(str(tmp_path / "b/best.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["last"]["train_loss"] == b["last"]["train_loss"]
    c = train_classifier(data, tmp_path / "c", _cfg(mix="mixup", epochs=2, seed=4), progress=False)
    assert c["last"]["train_loss"] != a["last"]["train_loss"]


def test_resume_continues_where_it_stopped(tiny_data, tmp_path):
    data, _ = tiny_data
    full = train_classifier(data, tmp_path / "full", _cfg(mix="cutmix", epochs=3), progress=False)
    part = train_classifier(data, tmp_path / "part", _cfg(mix="cutmix", epochs=3), progress=False,
                            max_epochs_this_call=1)
    assert part["epoch"] == 1
    with pytest.raises(FileExistsError, match="--resume"):
        train_classifier(data, tmp_path / "part", _cfg(mix="cutmix", epochs=3), progress=False)
    rest = train_classifier(data, tmp_path / "part", _cfg(mix="cutmix", epochs=3), progress=False, resume=True)
    assert rest["epoch"] == 3
    assert rest["last"]["train_loss"] == pytest.approx(full["last"]["train_loss"], rel=1e-6)
    history = [json.loads(line) for line in (tmp_path / "part/history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_evaluate_writes_metrics_and_plots(tiny_data, tmp_path, capsys):
    data, syn = tiny_data
    train_classifier(data, tmp_path, _cfg(mix="genmix", synthetic=syn, epochs=2), progress=False)
    assert main(["evaluate", "--model", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert DESIGN_KEYS <= set(metrics)
    assert metrics["split"] == "test" and metrics["n"] == 30 and metrics["mix"] == "genmix"
    assert len(metrics["per_class"]) == 3 and np.array(metrics["confusion_matrix"]).sum() == 30
    lo, hi = metrics["ci95"]["accuracy"]
    assert lo <= metrics["accuracy"] <= hi
    for name in ("confusion_matrix.png", "reliability.png", "roc.png", "features.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "accuracy" in capsys.readouterr().out


def test_cli_errors_are_one_line(tiny_data, tmp_path, capsys):
    data, _ = tiny_data
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    assert main(["train-classifier", "--data", str(bad), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.npz" in err
    assert main(["train-classifier", "--data", data, "--out", str(tmp_path / "r"), "--mix", "genmix",
                 "--no-progress"]) == 2  # a usage mistake
    assert "synthetic" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train-classifier", "--data", data, "--out", str(tmp_path / "r"), "--model", "alexnet"])
    assert exc.value.code == 2
    assert main(["evaluate", "--model", str(tmp_path / "nothing")]) == 1
    assert "not a classifier run" in capsys.readouterr().err


def _ddp_worker(rank, port, data, out, results):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    summary = train_classifier(data, out, _cfg(mix="mixup", epochs=1), device="cpu", progress=False)
    torch.save(summary, os.path.join(results, f"rank{rank}.pt"))


def test_two_process_ddp_training(tiny_data, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, _ = tiny_data
    mp.start_processes(_ddp_worker, args=(port, data, str(tmp_path / "run"), str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    # DDP keeps the replicas identical, so both processes validate the same model.
    assert r0["best_f1"] == r1["best_f1"] and r0["epoch"] == r1["epoch"] == 1
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 1  # written once


def test_a_plain_train_classifier_has_the_medmnist_protocol(tiny_data, tmp_path, monkeypatch):
    """No flags: the `medmnist` preset's classifier protocol, i.e. up to 100 epochs with early
    stopping on val macro-F1 after `patience` epochs without a better one, not a fixed length."""
    import genmix.training.classifier as classifier
    from genmix.pipeline import EXPERIMENT_PRESETS

    data, _ = tiny_data
    seen = {}

    def record(data, out, cfg, **kw):
        seen["cfg"] = cfg
        return {"best_f1": 0.5, "best_epoch": 1}

    monkeypatch.setattr(classifier, "train_classifier", record)
    assert main(["train-classifier", "--data", data, "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    cfg, protocol = seen["cfg"], EXPERIMENT_PRESETS["medmnist"]
    assert (cfg.model, cfg.epochs, cfg.patience, cfg.batch, cfg.lr) == (
        protocol["model"], protocol["epochs"], protocol["patience"], protocol["batch"], protocol["lr"])
    assert 0 < cfg.patience < cfg.epochs
    assert ClassifierConfig().patience == cfg.patience  # the Python API's default too

    # The run stops on val macro-F1: with patience 1, training ends one epoch after the best one.
    monkeypatch.undo()
    summary = train_classifier(data, tmp_path / "stop", _cfg(epochs=40, patience=1, lr=0.5), progress=False)
    history = [json.loads(line) for line in (tmp_path / "stop" / "history.jsonl").read_text().splitlines()]
    assert summary["epoch"] < 40 and len(history) == summary["epoch"]
    best = max(range(len(history)), key=lambda i: (history[i]["val_macro_f1"], -i))
    assert summary["epoch"] == best + 2  # the best epoch, then one without a better val macro-F1
