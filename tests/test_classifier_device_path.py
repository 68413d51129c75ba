"""The classifier's device data path: losses checked once per epoch (a non-finite one still stops
the run before anything of that epoch is saved), checkpoints spaced by checkpoint_s with
best.safetensors written beside them, a resume that repeats logged epochs logs them once, and,
on a GPU, training steps that never synchronise with the host."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genmix.errors import UserRunError
from genmix.training.checkpoint import list_checkpoints
from genmix.training.classifier import ClassifierConfig, ClassifierTrainer, train_classifier


def _npz(path, n_train=64, size=12, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("val", 24), ("test", 24)):
        labels = np.arange(n) % 2
        x = rng.normal(80, 25, (n, size, size))
        x[labels == 1, 2:8, 2:8] += 90
        arrays[f"{split}_images"] = x.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _npz(tmp_path_factory.mktemp("device-path") / "d.npz")


def _cfg(**kw):
    return ClassifierConfig(**{**dict(model="small_cnn", epochs=3, batch=16, lr=2e-3, seed=1, mix="mixup"), **kw})


def test_a_non_finite_loss_stops_the_run_at_the_epochs_end(data, tmp_path, monkeypatch):
    import genmix.mixing.base as base

    real, calls = base.soft_cross_entropy, []

    def sometimes_nan(logits, y):
        calls.append(1)
        loss = real(logits, y)
        return loss * float("nan") if len(calls) == 6 else loss  # epoch 2 (4 steps an epoch), step 1

    monkeypatch.setattr(base, "soft_cross_entropy", sometimes_nan)
    with pytest.raises(UserRunError, match=r"non-finite training loss at epoch 2, step 1;.*checkpoint was kept"):
        train_classifier(data, tmp_path, _cfg(), progress=False)
    assert len(calls) == 8  # the epoch ran to its end: no read-back per step
    ckpts = list_checkpoints(tmp_path / "checkpoints")
    assert [json.loads(p.read_text())["step"] for p in ckpts] == [4]  # epoch 1's only
    history = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["epoch"] for h in history] == [1]


def test_spaced_checkpoints_resume_to_the_same_run(data, tmp_path):
    full = train_classifier(data, tmp_path / "full", _cfg(), progress=False)
    spaced = train_classifier(data, tmp_path / "spaced", _cfg(checkpoint_s=3600), progress=False)
    assert spaced["last"] == full["last"]
    # Only the run's end was checkpointed; best.safetensors went to disk with it.
    assert [p.stem for p in list_checkpoints(tmp_path / "spaced" / "checkpoints")] == ["ckpt-000000012"]
    wf, ws = load_file(str(tmp_path / "full/best.safetensors")), load_file(str(tmp_path / "spaced/best.safetensors"))
    assert all(torch.equal(wf[k], ws[k]) for k in wf)

    # As after a kill -9 before any checkpoint: history.jsonl holds epochs no checkpoint holds.
    for path in (tmp_path / "spaced" / "checkpoints").iterdir():
        path.unlink()
    again = train_classifier(data, tmp_path / "spaced", _cfg(checkpoint_s=3600), progress=False, resume=True)
    assert again["last"] == full["last"]
    history = [json.loads(h) for h in (tmp_path / "spaced/history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]  # each epoch once


def test_checkpoint_s_is_checked_and_volatile(data, tmp_path):
    from genmix.errors import UsageError

    with pytest.raises(UsageError, match="checkpoint_s"):
        _cfg(checkpoint_s=-1).validate()
    assert "checkpoint_s" in ClassifierConfig.VOLATILE
    assert _cfg(checkpoint_s=5).fingerprint() == _cfg().fingerprint()


@pytest.mark.cuda
@pytest.mark.parametrize("mix", ["none", "mixup", "cutmix", "genmix", "gemix", "synth"])
def test_cuda_steps_never_wait_for_the_host(tmp_path, mix):
    from genmix.data import load_dataset
    from genmix.training import distributed as gdist

    spec = _npz(tmp_path / "d.npz", n_train=256, size=28)
    rng = np.random.default_rng(1)
    syn = tmp_path / "syn.npz"
    labels = np.arange(128) % 2
    np.savez(syn, train_images=rng.integers(0, 255, (128, 28, 28), dtype=np.uint8),
             train_labels=labels.reshape(-1, 1), soft_labels=np.eye(2, dtype=np.float32)[labels] * 0.8 + 0.1)
    cfg = ClassifierConfig(model="resnet18", mix=mix, batch=32, epochs=2, hflip=True, data_spec=spec, num_classes=2,
                           class_names=["a", "b"], channels=1, resolution=[28, 28],
                           synthetic=str(syn) if mix in ("genmix", "gemix", "synth") else None).validate()
    trainer = ClassifierTrainer(cfg, load_dataset(spec), gdist.DistInfo(device=torch.device("cuda", 0)))
    for _ in range(2):  # warm-up: cuDNN autotuning, lazy optimiser state, the epoch's order copy
        trainer.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            stats = trainer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats["train_loss"].device.type == "cuda"
    assert bool(torch.isfinite(trainer._losses[:5]).all())
