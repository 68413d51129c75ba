"""The run harness under every trainer: resume rules, per-rank RNG through CPU tensors, true
means in the log, the data split as a property of the data, leak refusal, what the kernels ran,
and the CLI's split between user mistakes and bugs."""

import json
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from genmix.errors import DataLeakError, SettingsChanged, UsageError
from genmix.training.checkpoint import latest_checkpoint, load_checkpoint
from genmix.training.distributed import DistInfo
from genmix.training.run import Run, StatsAccumulator

FAST_GAN = dict(resolution=16, batch=8, snapshot_kimg=0.016)


@pytest.fixture(scope="module")
def train_only_npz(tmp_path_factory):
    """A 2-class npz with a train split only: val and test are drawn from a split seed."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    images = rng.normal(70, 15, (60, 16, 16)).clip(0, 255)
    images[labels == 1, 4:12, 4:12] += 120
    path = tmp_path_factory.mktemp("data") / "train_only.npz"
    np.savez(path, train_images=images.clip(0, 255).astype(np.uint8), train_labels=labels.reshape(-1, 1))
    return str(path)


def _train_gan(data, out, **kw):
    from genmix.training.gan import train_gan

    overrides = dict(FAST_GAN, **kw.pop("overrides", {}))
    return train_gan(data, out, preset=kw.pop("preset", "cpu-tiny"), overrides=overrides, progress=False,
                     device="cpu", **kw)


# ---------------------------------------------------------------------------- RNG through CPU tensors

class _OnAnotherDevice:
    """Stands in for an RNG state that a checkpoint mapped onto a GPU: only `.cpu()` gives the
    bytes that `Generator.set_state` / `torch.set_rng_state` accept."""

    device = torch.device("cuda")

    def __init__(self, tensor):
        self.tensor = tensor

    def cpu(self):
        return self.tensor


def _gan_trainer(**kw):
    from genmix.training.gan import GANConfig, GANTrainer

    cfg = GANConfig(resolution=16, channels=1, num_classes=2, batch=4, z_dim=8, w_dim=16, channel_base=256,
                    channel_max=16, mapping_layers=1, **kw)
    images = torch.rand(16, 1, 16, 16) * 2 - 1
    return GANTrainer(cfg, images, torch.arange(16) % 2)


def test_restore_reads_onto_the_cpu_and_sets_rng_from_cpu_tensors(tmp_path, monkeypatch):
    import genmix.training.run as run_module

    a = _gan_trainer()
    a.step()
    run = Run(tmp_path, "GAN", DistInfo())
    run.begin(a.cfg)
    run.checkpoint(a)
    expected = a.rng.get_state()

    seen = {}
    real_load = run_module.load_checkpoint

    def recording_load(path, map_location="cpu"):
        seen["map_location"] = map_location
        state = real_load(path, map_location=map_location)
        # As if the checkpoint had been mapped to a GPU: no RNG state is a CPU tensor any more.
        state["rng"]["ranks"] = [{k: _OnAnotherDevice(v) for k, v in r.items()} for r in state["rng"]["ranks"]]
        return state

    monkeypatch.setattr(run_module, "load_checkpoint", recording_load)
    b = _gan_trainer()
    Run(tmp_path, "GAN", DistInfo(), resume=True).restore(b)
    assert seen["map_location"] == "cpu"
    assert torch.equal(b.rng.get_state(), expected)


# ---------------------------------------------------------------------------- settings on resume

def test_resume_refuses_changed_settings_and_says_what_it_resumed(train_only_npz, tmp_path):
    out = tmp_path / "gan"
    _train_gan(train_only_npz, out, overrides=dict(kimg=0.032), max_steps=2)
    messages = []
    with pytest.raises(SettingsChanged, match=r"r1_gamma: 0\.05 -> 1\.0.*only kimg, budget_min, snapshot_kimg"):
        _train_gan(train_only_npz, out, overrides=dict(kimg=0.032, r1_gamma=1.0), resume=True)
    # The schedule may change; what the run resumed from is said, not only shown as a bar.
    _train_gan(train_only_npz, out, overrides=dict(kimg=0.048), resume=True, log=messages.append)
    assert any(re.match(r"resuming from ckpt-000000016 at 0\.0 kimg", m) for m in messages), messages
    state = load_checkpoint(latest_checkpoint(out / "checkpoints"))["trainer"]
    assert state["cur_nimg"] == 48
    info = json.loads((out / "run.json").read_text())
    assert info["complete"] and [s["resumed_from"] for s in info["starts"]] == [None, "ckpt-000000016"]
    # Every start says what it ran on: results are bit-comparable only on the same processor,
    # thread count and torch build.
    host = info["starts"][-1]["host"]
    assert host["torch"] == torch.__version__ and host["threads"] == torch.get_num_threads()
    assert host["capability"] == torch.backends.cpu.get_cpu_capability() and host["device"]
    with pytest.raises(FileExistsError, match="--resume"):
        _train_gan(train_only_npz, out)


def test_classifier_resume_compares_only_what_was_asked(train_only_npz, tmp_path):
    from genmix.training.classifier import ClassifierConfig, train_classifier

    out = tmp_path / "clf"
    cfg = ClassifierConfig(model="small_cnn", epochs=1, batch=16, seed=3)
    train_classifier(train_only_npz, out, cfg, progress=False)
    # A resume given only the new schedule keeps every other saved setting...
    summary = train_classifier(train_only_npz, out, {"epochs": 2}, resume=True, progress=False)
    assert summary["epoch"] == 2
    # ...and one that asks for another model is refused, naming old and new value.
    with pytest.raises(SettingsChanged, match="model: 'small_cnn' -> 'resnet18'"):
        train_classifier(train_only_npz, out, {"epochs": 3, "model": "resnet18"}, resume=True, progress=False)


# ---------------------------------------------------------------------------- the log

def test_accumulator_means_over_the_steps_that_reported():
    acc = StatsAccumulator()
    acc.add({"loss": 1.0, "r1": torch.tensor(8.0)})
    acc.add({"loss": 3.0})
    acc.add({"loss": 5.0, "r1": torch.tensor(4.0)})
    assert acc.means() == {"loss": 3.0, "r1": 6.0}
    assert acc.counts == {"loss": 3, "r1": 2}


def test_gan_log_holds_true_penalty_means_and_kernel_calls(train_only_npz, tmp_path):
    out = tmp_path / "gan"
    _train_gan(train_only_npz, out, overrides=dict(kimg=0.064, snapshot_kimg=0.064, r1_interval=4))
    (line,) = [json.loads(row) for row in (out / "log.jsonl").read_text().splitlines()]
    assert line["counts"]["loss_G"] == 8 and line["counts"]["r1_penalty"] == 2
    assert line["r1_penalty"] > 0 and line["kimg"] == pytest.approx(0.064)
    assert line["kernels"]["bias_act"]  # the op calls of that period, per implementation
    info = json.loads((out / "run.json").read_text())
    assert sum(info["kernels"]["calls"]["modulated_conv2d"].values()) > 0


# ---------------------------------------------------------------------------- data split and leaks

def test_split_comes_from_the_split_seed_not_the_model_seed(train_only_npz, tmp_path):
    from genmix.training.classifier import ClassifierConfig, train_classifier

    _train_gan(train_only_npz, tmp_path / "gan", overrides=dict(kimg=0.016, seed=1))
    train_classifier(train_only_npz, tmp_path / "clf", ClassifierConfig(model="small_cnn", epochs=1, seed=0),
                     progress=False)
    gan = json.loads((tmp_path / "gan" / "run.json").read_text())["data"]
    clf = json.loads((tmp_path / "clf" / "run.json").read_text())["data"]
    assert gan["split_seed"] == clf["split_seed"] == 0 and gan["digest"] == clf["digest"]


def test_classifier_refuses_a_synthetic_set_whose_generator_saw_its_test_images(train_only_npz, tmp_path):
    from genmix.cli import main
    from genmix.training.classifier import ClassifierConfig, train_classifier
    from genmix.training.synthesize import synthesize

    _train_gan(train_only_npz, tmp_path / "gan", overrides=dict(kimg=0.016, split_seed=5))
    syn = tmp_path / "syn.npz"
    synthesize(tmp_path / "gan", syn, per_class=4, preview=False)
    with np.load(syn) as data:
        assert len(data["generator_train_digests"]) > 0
    cfg = ClassifierConfig(model="small_cnn", epochs=1, mix="genmix", synthetic=str(syn))
    with pytest.raises(DataLeakError, match="trained on .* val/test images"):
        train_classifier(train_only_npz, tmp_path / "clf", cfg, progress=False)
    assert main(["train-classifier", "--data", train_only_npz, "--out", str(tmp_path / "c2"), "--model",
                 "small_cnn", "--mix", "synth", "--synthetic", str(syn), "--no-progress"]) == 1
    # The same split seed as the generator: accepted.
    ok = ClassifierConfig(model="small_cnn", epochs=1, mix="genmix", synthetic=str(syn), split_seed=5)
    assert train_classifier(train_only_npz, tmp_path / "clf5", ok, progress=False)["epoch"] == 1


# ---------------------------------------------------------------------------- torchrun resume

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _resume_worker(rank, port, data, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from genmix.training import distributed as gdist

    gdist.init_from_env("cpu")  # one process group for the three runs below
    kw = dict(overrides=dict(kimg=0.048, aug="ada"))
    _train_gan(data, Path(out_dir) / "full", **kw)
    _train_gan(data, Path(out_dir) / "part", max_steps=2, **kw)   # stopped after the first checkpoint
    _train_gan(data, Path(out_dir) / "part", resume=True, **kw)
    gdist.shutdown()


def test_two_gloo_processes_resume_with_their_own_streams(train_only_npz, tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_resume_worker, args=(_free_port(), train_only_npz, str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    first = load_checkpoint(tmp_path / "part" / "checkpoints" / "ckpt-000000016.json")
    r0, r1 = first["rng"]["ranks"]
    assert not torch.equal(r0["batches_latents"], r1["batches_latents"])  # each rank its own stream
    full = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))["trainer"]
    part = load_checkpoint(latest_checkpoint(tmp_path / "part" / "checkpoints"))["trainer"]
    assert part["cur_nimg"] == full["cur_nimg"] == 48
    for key, value in full["G"].items():
        torch.testing.assert_close(part["G"][key], value, rtol=0, atol=0, msg=key)


# ---------------------------------------------------------------------------- CLI and packaging

def test_cli_keeps_user_mistakes_to_one_line_and_bugs_to_a_traceback(monkeypatch, capsys):
    import genmix.ops
    from genmix.cli import main

    def broken():
        raise KeyError("a bug inside genmix")

    monkeypatch.setattr(genmix.ops, "backends", broken)
    with pytest.raises(KeyError, match="a bug inside genmix"):  # not turned into "genmix: error: ..."
        main(["info"])
    assert main(["experiment", "--data", "phantom", "--out", "x", "--strategies", "none,dropout"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "strategies" in err
    assert isinstance(UsageError("x"), ValueError)


def test_requires_python_admits_only_versions_with_tomllib():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    bound = re.search(r'requires-python\s*=\s*">=\s*3\.(\d+)"', text)
    assert bound and int(bound.group(1)) >= 11  # genmix.pipeline imports tomllib (Python 3.11+)


# ---------------------------------------------------------------------------- the small-data recipe

def test_budget_stops_training_and_the_best_snapshot_is_kept(train_only_npz, tmp_path):
    from genmix.training.gan import BEST_WEIGHTS, load_generator

    out = tmp_path / "gan"
    _train_gan(train_only_npz, out, overrides=dict(kimg=10, budget_min=0.02, snapshot_kid_n=16, mirror=True))
    state = load_checkpoint(latest_checkpoint(out / "checkpoints"))["trainer"]
    assert 0 < state["cur_nimg"] < 10_000 and state["train_seconds"] >= 0.02 * 60  # the budget, not kimg
    log = [json.loads(row) for row in (out / "log.jsonl").read_text().splitlines()]
    kids = [row["val_kid"] for row in log]
    best = log[-1]["best_kimg"]
    assert best == pytest.approx(log[int(np.argmin(kids))]["kimg"])  # the lowest validation KID wins
    assert (out / BEST_WEIGHTS).is_file() and state["best"]["kimg"] == best
    G_best, _ = load_generator(out)
    G_last, _ = load_generator(out, which="latest")
    if best != log[-1]["kimg"]:
        assert any(not torch.equal(a, b) for a, b in zip(G_best.state_dict().values(), G_last.state_dict().values()))
    # A resume with a longer budget continues the clock rather than restarting it.
    longer = state["train_seconds"] / 60 + 0.01
    _train_gan(train_only_npz, out, overrides=dict(budget_min=longer), resume=True, preset=None)
    again = load_checkpoint(latest_checkpoint(out / "checkpoints"))["trainer"]
    assert again["cur_nimg"] > state["cur_nimg"] and again["train_seconds"] >= longer * 60


# ---------------------------------------------------------------------------- scarce-data subsets

def test_generator_and_classifier_see_the_same_reduced_set(train_only_npz, tmp_path):
    from genmix.training.classifier import ClassifierConfig, train_classifier
    from genmix.training.synthesize import synthesize

    _train_gan(train_only_npz, tmp_path / "gan", overrides=dict(kimg=0.016, train_fraction=0.5))
    syn = tmp_path / "syn.npz"
    synthesize(tmp_path / "gan", syn, per_class=8, preview=False)
    same = ClassifierConfig(model="small_cnn", epochs=1, mix="synth", synthetic=str(syn), train_fraction=0.5)
    train_classifier(train_only_npz, tmp_path / "clf", same, progress=False)
    gan = json.loads((tmp_path / "gan" / "run.json").read_text())["data"]
    clf = json.loads((tmp_path / "clf" / "run.json").read_text())["data"]
    assert gan["digest"]["train"] == clf["digest"]["train"] and sum(gan["counts"]["train"]) < 30
    # A classifier on a smaller share than its generator saw is refused: the generator would
    # bring in real images the classifier is not meant to have.
    fewer = ClassifierConfig(model="small_cnn", epochs=1, mix="synth", synthetic=str(syn), train_fraction=0.25)
    with pytest.raises(DataLeakError, match="real images that this run does not train on"):
        train_classifier(train_only_npz, tmp_path / "clf2", fewer, progress=False)


@pytest.mark.parametrize("flags, word", [(["--train-fraction", "0"], "train_fraction"),
                                         (["--train-fraction", "1.5"], "train_fraction"),
                                         (["--rare-class", "nope", "--rare-fraction", "0.5"], "nope"),
                                         (["--max-per-class", "100000"], "max_per_class")])
def test_bad_subset_values_are_usage_errors(train_only_npz, tmp_path, capsys, flags, word):
    from genmix.cli import main

    assert main(["train-classifier", "--data", train_only_npz, "--out", str(tmp_path / "c"), "--model",
                 "small_cnn", "--epochs", "1", "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err


def test_a_rerun_on_the_same_host_is_bit_identical(train_only_npz, tmp_path):
    """Same settings, seed, processor, thread count and torch build: the same weights. (Another
    thread count changes the reduction order, so results then differ in the last bits and drift
    apart over training; that is why every start records its host.)"""
    from safetensors.torch import load_file

    from genmix.training.classifier import ClassifierConfig, train_classifier

    cfg = ClassifierConfig(model="small_cnn", epochs=2, batch=16, seed=5)
    weights = []
    for name in ("a", "b"):
        train_classifier(train_only_npz, tmp_path / name, cfg, progress=False)
        weights.append(load_file(tmp_path / name / "best.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    hosts = [json.loads((tmp_path / n / "run.json").read_text())["starts"][0]["host"] for n in ("a", "b")]
    assert hosts[0] == hosts[1]


# ---------------------------------------------------------------------------- progress bar

def test_a_time_budgeted_run_shows_its_budget_not_a_kimg_eta(tmp_path, capsys):
    """A 6-minute generator stage whose kimg are only a cap once showed "1% [01:28<2:13:33]":
    with a budget the bar counts seconds of it, and its end is the budget's end."""
    import types

    from genmix.training.run import Trainer

    class Budgeted(Trainer):
        unit, total, progress = "img", 1_000_000, 0  # a kimg cap the budget ends long before

        def __init__(self):
            self.cfg, self.seconds = types.SimpleNamespace(seed=0), 0.0

        def budget_seconds(self):
            return 360.0

        def step(self):
            self.progress, self.seconds = self.progress + 32, self.seconds + 90.0
            return {}

        def fraction(self):
            return min(max(self.progress / self.total, self.seconds / 360), 1.0)

        def finished(self):
            return self.seconds >= 360

        def period_done(self):
            return False

        def end_period(self, run, means=None):
            return {}

        def state_dict(self):
            return {}

    capsys.readouterr()
    Run(tmp_path / "run", "test", DistInfo()).fit(Budgeted(), progress=True, desc="train-diffusion")
    err = capsys.readouterr().err
    assert "360/360 s of the time budget" in err and "img" not in err
    assert _gan_trainer(budget_min=6).budget_seconds() == 360 and _gan_trainer().budget_seconds() is None
