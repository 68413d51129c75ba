"""The main job end to end: `genmix demo` on the tiny preset, experiment resume after an
interrupted stage, TOML configs, and one-line CLI errors."""

import json

import pytest

from genmix.cli import main
from genmix.errors import SettingsChanged
from genmix.metrics.paired import VERDICTS
from genmix.pipeline import ExperimentConfig, load_config_file, make_config, run_experiment


def test_demo_tiny_end_to_end(tmp_path, capsys):
    from genmix.demo import DEMO_STRATEGIES

    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    assert report.split("\n\n")[1].startswith("**Verdict:**")  # the report opens with the verdict
    assert {"oversample", "edit", "diffmix"} <= set(DEMO_STRATEGIES)
    for strategy in DEMO_STRATEGIES:
        assert f"| {strategy} |" in report
        assert (out / "runs" / strategy / "seed0" / "metrics.json").is_file()
    assert json.loads((out / "gan" / "config.json").read_text())["arch"] == "diffusion"  # the default generator
    assert "no winner is declared from a single run" in report and "Always predicting the majority class" in report
    assert "GeMix soft labels by the `code` rule" in report
    assert "phantom" in report and "not patient data" in report
    for fig in ("gan_samples.png", "soft_label_strip.png", "none_confusion_matrix.png", "genmix_features.png"):
        assert (out / "figures" / fig).read_bytes()[:4] == b"\x89PNG"
    with __import__("numpy").load(out / "synthetic" / "gemix.npz") as syn:
        assert syn["train_images"].shape[1:] == (64, 64)  # back at the dataset's own size
        soft = syn["soft_labels"]
        assert soft.shape[1] == 3 and abs(soft.sum(1) - 1).max() < 1e-5 and (soft.max(1) < 1).all()
    ev = json.loads((out / "gan" / "evaluation" / "generator_eval.json").read_text())
    assert ev["fid"] >= 0 and ev["fid_floor"] >= 0 and len(ev["per_class"]) == 3
    assert ev["tstr"]["real_source"] != "trained"  # TRTR is the experiment's own `none` run
    assert "TSTR/TRTR macro-F1 ratio" in report and "| FID floor |" in report.replace(" FID floor ", " FID floor ")
    assert "random-weight CNN features" in report  # the tiny preset's extractor, said at the top
    assert (out / "figures" / "real_vs_generated_gan.png").read_bytes()[:4] == b"\x89PNG"
    assert "report written" in capsys.readouterr().out


def test_experiment_resumes_after_an_interrupted_stage(tmp_path, monkeypatch):
    import genmix.training.classifier as classifier

    cfg = make_config("tiny", {}, dict(data="phantom", out=str(tmp_path), strategies=["none", "genmix"], epochs=2,
                                       fid=False))
    real_train = classifier.train_classifier
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[1])
        if "genmix" in str(args[1]):
            real_train(*args, **dict(kwargs, max_epochs_this_call=1))
            raise KeyboardInterrupt  # Ctrl-C (or a crash) in the middle of the genmix stage
        return real_train(*args, **kwargs)

    monkeypatch.setattr(classifier, "train_classifier", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, progress=False, log=lambda _: None)
    none_metrics = tmp_path / "runs/none/seed0/metrics.json"
    stamp = none_metrics.stat().st_mtime_ns
    gan_done = (tmp_path / "gan/stage.json").stat().st_mtime_ns
    assert not (tmp_path / "runs/genmix/seed0/metrics.json").exists()

    monkeypatch.setattr(classifier, "train_classifier", real_train)
    report = run_experiment(cfg, progress=False, log=lambda _: None)
    assert report.is_file()
    # Finished stages were not redone; the interrupted one continued from its checkpoint.
    assert none_metrics.stat().st_mtime_ns == stamp
    assert (tmp_path / "gan/stage.json").stat().st_mtime_ns == gan_done
    history = [json.loads(line) for line in (tmp_path / "runs/genmix/seed0/history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]

    # A rerun with other settings neither reuses the old results nor silently rewrites
    # experiment.json: it names what changed, and replaces the changed stages only when asked.
    changed = make_config("tiny", {}, dict(data="phantom", out=str(tmp_path), strategies=["none", "genmix"],
                                           epochs=3, fid=False))
    with pytest.raises(SettingsChanged, match="epochs: 2 -> 3"):
        run_experiment(changed, progress=False, log=lambda _: None)
    assert json.loads((tmp_path / "experiment.json").read_text())["epochs"] == 2
    assert none_metrics.stat().st_mtime_ns == stamp
    run_experiment(changed, progress=False, log=lambda _: None, rerun_changed=True)
    assert json.loads((tmp_path / "experiment.json").read_text())["epochs"] == 3
    assert len((tmp_path / "runs/none/seed0/history.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "gan/stage.json").stat().st_mtime_ns == gan_done  # the generator's settings held


def test_two_processes_with_their_own_strategies_share_an_experiment(tmp_path):
    """Experiments split across processes (disjoint strategies, one OUT) keep every stage's
    timing, and a last run over all strategies only renders the report."""
    def cfg(strategies):
        return make_config("tiny", {}, dict(data="phantom", out=str(tmp_path), strategies=strategies, fid=False))

    run_experiment(cfg(["none"]), progress=False, log=lambda _: None)
    run_experiment(cfg(["mixup"]), progress=False, log=lambda _: None)
    stamps = {s: (tmp_path / f"runs/{s}/seed0/metrics.json").stat().st_mtime_ns for s in ("none", "mixup")}
    assert set(json.loads((tmp_path / "timings.json").read_text())) == {"none/seed0", "mixup/seed0"}
    report = run_experiment(cfg(["none", "mixup"]), progress=False, log=lambda _: None).read_text()
    assert {s: (tmp_path / f"runs/{s}/seed0/metrics.json").stat().st_mtime_ns for s in stamps} == stamps
    timings = report.split("## Timings")[1]
    assert "| none/seed0 |" in timings and "| mixup/seed0 |" in timings


def test_toml_config_and_precedence(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('data = "phantom"\nout = "x"\nstrategies = ["none", "mixup"]\nseeds = 2\nepochs = 3\n')
    values = load_config_file(path)
    cfg = make_config("tiny", values, dict(epochs=5))
    assert cfg.strategies == ["none", "mixup"] and cfg.seeds == 2 and cfg.epochs == 5
    assert not cfg.needs_gan
    path.write_text("seeds = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config_file(path)
    with pytest.raises(ValueError, match="unknown experiment settings: colour"):
        ExperimentConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="strategies"):
        make_config("tiny", {}, dict(strategies=["none", "dropout"]))


def test_experiment_cli_errors(tmp_path, capsys):
    assert main(["experiment", "--out", str(tmp_path)]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(["experiment", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o"),
                 "--preset", "tiny", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("genmix: error:") and err.count("\n") == 1
    assert main(["experiment", "--data", "phantom", "--out", str(tmp_path), "--config", str(tmp_path / "no.toml")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--preset", "huge"])
    assert exc.value.code == 2


def test_generators_side_by_side_and_a_learning_curve(tmp_path):
    """Strategy x generator (the GenMix paper's Table 1 layout) and a learning curve over
    training-set shares, on the tiny preset."""
    cfg = make_config("tiny", {}, dict(data="phantom", out=str(tmp_path / "table"), strategies=["none", "genmix"],
                                       gan_arch="stylegan2,diffusion", fid=False))
    report = run_experiment(cfg, progress=False, log=lambda _: None).read_text()
    for label in ("genmix@stylegan2", "genmix@diffusion"):
        assert f"| {label} |" in report
    assert json.loads((tmp_path / "table/gan-diffusion/config.json").read_text())["arch"] == "diffusion"
    with pytest.raises(ValueError, match="gan_arch"):
        make_config("tiny", {}, dict(data="phantom", out="x", gan_arch="stylegan2,vae"))

    curve = make_config("tiny", {}, dict(data="phantom", out=str(tmp_path / "curve"), strategies=["none", "mixup"],
                                         train_fractions=[0.25, 1.0]))
    text = run_experiment(curve, progress=False, log=lambda _: None).read_text()
    assert "learning curve" in text and "| mixup |" in text
    assert (tmp_path / "curve/figures/learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    small = json.loads((tmp_path / "curve/fraction-0.25/runs/none/seed0/run.json").read_text())["data"]
    full = json.loads((tmp_path / "curve/fraction-1/runs/none/seed0/run.json").read_text())["data"]
    assert sum(small["counts"]["train"]) < 0.3 * sum(full["counts"]["train"])
    assert small["counts"]["test"] == full["counts"]["test"]  # val and test are never reduced
    with pytest.raises(ValueError, match="train_fractions"):
        make_config("tiny", {}, dict(data="phantom", out="x", train_fractions=[0.0, 1.0]))


def test_a_synthetic_ratio_sweep_pairs_every_ratio_with_none(tmp_path, monkeypatch):
    """--synth-ratios: synth and the oversample control run again at each ratio, drawing from sets
    made for the largest one, each ratio paired against `none`; report.md gets a table and a
    figure. 8-px data and a one-step diffusion generator keep it fast."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread avoids OpenMP stalls on a shared CPU
    try:
        _sweep(tmp_path, monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _sweep(tmp_path, monkeypatch):
    import numpy as np

    import genmix.training.generator as generator
    import genmix.training.synthesize as synthesize

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 24), ("val", 12), ("test", 12)):
        labels = np.array([0] * (n * 2 // 3) + [1] * (n // 6) + [2] * (n - n * 2 // 3 - n // 6))
        arrays[f"{split}_images"] = (rng.normal(60, 10, (n, 8, 8)) + 60 * labels[:, None, None]).clip(0, 255).astype(
            np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    np.savez(tmp_path / "tiny.npz", **arrays)
    real_train = generator.train_generator

    def small(*args, overrides=None, **kw):
        return real_train(*args, overrides=dict(overrides or {}, resolution=8, model_channels=8, kimg=0.008,
                                                snapshot_kimg=0.008), **kw)

    monkeypatch.setattr(generator, "train_generator", small)
    monkeypatch.setattr(synthesize, "interpolation_strip", lambda *a, **k: None)
    out = tmp_path / "exp"
    assert main(["experiment", "--data", str(tmp_path / "tiny.npz"), "--out", str(out), "--preset", "tiny",
                 "--strategies", "none,oversample,synth", "--gan-arch", "diffusion", "--seeds", "2",
                 "--synth-ratios", "0.5,1", "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    for run in ("oversample", "oversample-r1", "synth", "synth-r1"):
        ratio = 1.0 if run.endswith("-r1") else 0.5  # 0.5: the comparison's own runs, reused
        for seed in (0, 1):
            cfg = json.loads((out / "runs" / run / f"seed{seed}" / "config.json").read_text())
            assert cfg["synth_ratio"] == ratio and cfg["mix"] == run.split("-")[0]
    with np.load(out / "synthetic" / "onehot.npz") as syn:
        assert len(syn["train_labels"]) == 24  # drawn for the largest ratio: 1 x 24 real images
    sweep = report.split("## Synthetic-ratio sweep")[1]
    assert "| Strategy | ratio 0.5 (the comparison's) | ratio 1 |" in sweep
    assert "| synth | " in sweep and "| oversample | " in sweep and "genmix` and `gemix` mix" in sweep
    assert sum(sweep.count(f", {verdict} |") for verdict in VERDICTS) == 4
    assert (out / "figures" / "synth_ratio_sweep.png").read_bytes()[:4] == b"\x89PNG"
    table = report.split("## Test-set results")[1].split("##")[0]
    assert "-r1" not in table  # the comparison's tables hold the comparison's runs only
    assert "| synth-r1/seed0 |" in report.split("## Timings")[1]
    with pytest.raises(ValueError, match="add none"):
        make_config("tiny", {}, dict(data="phantom", out="x", strategies=["synth"], synth_ratios=[1.0]))


def test_the_demo_fits_its_time_limit_and_shows_its_plan(capsys):
    """`genmix demo --dry-run`: the cpu demo's stages with their expected times on a 2-core CPU
    (the cost model calibrated on the committed stage timings) add up to under 15 minutes."""
    from genmix.demo import DEMO_STRATEGIES, demo_config, plan

    assert main(["demo", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "generator diffusion (cpu, 3 min budget" in text and "generator evaluation off" in text
    rows = dict(plan(demo_config("cpu")))
    assert all(seconds is not None for seconds in rows.values())
    assert sum(rows.values()) < 15 * 60 and f"total {sum(rows.values()) / 60:.1f} min" in text
    assert {f"{s}/seed{k}" for s in DEMO_STRATEGIES for k in range(3)} <= set(rows)
    assert 180 <= rows["gan"] < 300 and rows["edit"] < rows["synthesize"]


def test_the_run_bar_shows_a_time_budgeted_stage_against_its_budget():
    """The whole-run bar once promised 2 h 13 min after 88 s of a 6-minute generator budget: it
    now shows the stage against its budget and no whole-run estimate."""
    from genmix.pipeline import _gan_budget_s, _Progress

    bar = _Progress(["gan", "none/seed0", "report"], True)
    bar.start("gan")
    bar.budget(360.0)
    bar.fraction(88, 360)
    line = str(bar.bar)
    assert "genmix [1/3] gan" in line and "01:28 of its 06:00 time budget" in line and "<" not in line
    bar.start("none/seed0")
    assert "time budget" not in str(bar.bar)
    bar.close()
    assert _gan_budget_s(make_config("cpu", {}, {}), "diffusion") == 360
    assert _gan_budget_s(make_config("cpu", {}, dict(gan_budget_min=4.0)), "stylegan2") == 240
    assert _gan_budget_s(make_config("tiny", {}, {}), "diffusion") is None  # sized by kimg alone
