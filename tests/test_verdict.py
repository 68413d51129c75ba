"""The verdict on each strategy (helps / within noise / below none / does not beat the control) on
fixed numbers, and report.md opening with the verdict paragraph."""

import json

import numpy as np
import pytest

from genmix.data import MedicalDataset, Split
from genmix.metrics.paired import VERDICTS, paired_difference, strategy_verdict
from genmix.pipeline import make_config
from genmix.report.markdown import strategy_verdicts, verdict_paragraph, write_report


def d(mean, lo, hi, n=5):
    return {"mean": mean, "ci": None if lo is None else [lo, hi], "n": n}


CONTROL = d(0.020, 0.010, 0.030)


@pytest.mark.parametrize("diff, control, needs, verdict", [
    (d(0.050, 0.030, 0.070), CONTROL, True, "helps"),                            # above none and above the control
    (d(0.015, 0.005, 0.025), CONTROL, True, "does not beat the control"),        # above none, below the control
    (d(0.020, 0.010, 0.030), CONTROL, True, "does not beat the control"),        # equal means: not above
    (d(0.015, 0.005, 0.025), None, True, "not tested against the control"),      # control not run
    (d(0.015, 0.005, 0.025), {"mean": None}, True, "not tested against the control"),
    (d(0.015, 0.005, 0.025), None, False, "helps"),                              # real-image strategy: no control
    (d(0.010, -0.010, 0.030), CONTROL, True, "within noise"),
    (d(0.010, 0.000, 0.020), CONTROL, True, "within noise"),                     # touching 0 does not exclude it
    (d(-0.010, -0.020, 0.000), CONTROL, True, "within noise"),
    (d(-0.030, -0.050, -0.010), CONTROL, True, "below none"),
    (d(-0.030, -0.050, -0.010), None, False, "below none"),
    (d(0.100, None, None, n=1), CONTROL, True, "no interval"),
])
def test_verdict_rule(diff, control, needs, verdict):
    assert strategy_verdict(diff, control, needs_control=needs) == verdict
    assert verdict in VERDICTS


def test_verdict_on_paired_runs_and_bad_input():
    none = [0.70, 0.72, 0.71, 0.69, 0.73]
    synth = paired_difference([0.75, 0.78, 0.76, 0.73, 0.79], none)         # +0.052, interval above 0
    oversample = paired_difference([0.72, 0.74, 0.73, 0.71, 0.75], none)    # +0.020, interval above 0
    genmix = paired_difference([0.715, 0.735, 0.725, 0.705, 0.745], none)   # +0.015, interval above 0
    assert strategy_verdict(synth, oversample) == "helps"
    assert strategy_verdict(genmix, oversample) == "does not beat the control"
    assert strategy_verdict(oversample, None, needs_control=False) == "helps"
    with pytest.raises(TypeError, match="vs_none"):
        strategy_verdict([0.1, 0.2])
    with pytest.raises(TypeError, match="control"):
        strategy_verdict(synth, 0.02)


def test_the_report_layer_applies_the_control_to_generative_strategies_only():
    paired = {"mixup": {"macro_f1": d(0.015, 0.005, 0.025)},
              "oversample": {"macro_f1": CONTROL},
              "synth@diffusion": {"macro_f1": d(0.015, 0.005, 0.025)},
              "gemix+remix": {"macro_f1": d(0.050, 0.030, 0.070)},
              "diffmix": {"macro_f1": d(-0.030, -0.050, -0.010)}}
    verdicts = {s: v for s, (v, _, _) in strategy_verdicts(paired).items()}
    assert verdicts == {"mixup": "helps", "oversample": "helps", "synth@diffusion": "does not beat the control",
                        "gemix+remix": "helps", "diffmix": "below none"}
    text = verdict_paragraph(paired, several=True, has_none=True)
    assert text.startswith("**Verdict:** `mixup` (+0.015), `oversample` (+0.020, the control), `gemix+remix` "
                           "(+0.050) help on test macro-F1")
    assert "exceeds the `oversample` control's (+0.020" in text
    assert "Above `none` but not above `oversample`: `synth@diffusion` (+0.015)" in text
    assert "below `none` (the interval lies under 0): `diffmix` (-0.030)" in text
    assert "\n" not in text
    without = {k: v for k, v in paired.items() if k != "oversample"}
    text = verdict_paragraph(without, several=True, has_none=True)
    assert "the `oversample` control was not run, so no generative strategy can be called helpful" in text
    assert "Above `none`, but the `oversample` control was not run: `synth@diffusion` (+0.015), `gemix+remix` " \
           "(+0.050)" in text
    assert "one run per strategy" in verdict_paragraph({}, several=False, has_none=True)
    assert "no finished `none` runs" in verdict_paragraph({}, several=True, has_none=False)


def _dataset():
    rng = np.random.default_rng(0)

    def split(n_major, n_minor):
        labels = np.array([0] * n_major + [1] * n_minor, dtype=np.int64)
        return Split(rng.integers(0, 255, (len(labels), 8, 8, 1), dtype=np.uint8), labels)

    return MedicalDataset("toy", ["common", "rare"], {"train": split(30, 10), "val": split(6, 2),
                                                      "test": split(15, 5)})


def _write_runs(out, strategy, f1s):
    for seed, f1 in enumerate(f1s):
        run = out / "runs" / strategy / f"seed{seed}"
        run.mkdir(parents=True)
        per_class = [{"name": "common", "sensitivity": 0.9, "fnr": 0.1}, {"name": "rare", "sensitivity": 0.5, "fnr": 0.5}]
        run.joinpath("metrics.json").write_text(json.dumps(dict(accuracy=0.8, balanced_accuracy=0.7, macro_f1=f1,
                                                                auc=0.9, ece=0.05, per_class=per_class)))


def test_report_opens_with_the_verdict(tmp_path):
    f1 = {"none": [0.70, 0.72, 0.71, 0.69, 0.73],
          "oversample": [0.72, 0.74, 0.73, 0.71, 0.75],
          "synth": [0.75, 0.78, 0.76, 0.73, 0.79],
          "genmix": [0.715, 0.735, 0.725, 0.705, 0.745],
          "mixup": [0.71, 0.70, 0.73, 0.68, 0.74]}
    for strategy, values in f1.items():
        _write_runs(tmp_path, strategy, values)
    runs = [(s, seed, None) for s in f1 for seed in range(5)]
    cfg = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=list(f1), seeds=5))
    report = write_report(tmp_path, cfg, _dataset(), runs, {}).read_text()
    paragraphs = report.split("\n\n")
    assert paragraphs[0] == "# genmix experiment: toy"
    verdict = paragraphs[1]
    assert verdict.startswith("**Verdict:** `oversample` (+0.020, the control), `synth` (+0.052) help ")
    assert "Above `none` but not above `oversample`: `genmix` (+0.015)" in verdict
    assert "within noise (the interval includes 0): `mixup` (+0.002)" in verdict
    assert report.index(verdict) < report.index("| Strategy |")  # before every table
    table = report.split("Verdicts (")[1]
    assert "| synth | +0.052 [" in table and "| +0.020 | helps |" in table
    assert "| genmix | +0.015 [" in table and "| +0.020 | does not beat the control |" in table
    assert "| mixup | +0.002 [" in table and "| — | within noise |" in table

    one = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=list(f1), seeds=1))
    report = write_report(tmp_path, one, _dataset(), [(s, 0, None) for s in f1], {}).read_text()
    assert report.split("\n\n")[1].startswith("**Verdict:** one run per strategy")
