"""The verdict on each strategy (helps / within noise / below none / level with or below the control)
on fixed numbers, and report.md opening with the verdict paragraph."""

import json

import numpy as np
import pytest

from genmix.data import MedicalDataset, Split
from genmix.metrics.paired import VERDICTS, paired_difference, strategy_verdict
from genmix.pipeline import make_config
from genmix.report.markdown import strategy_verdicts, verdict_paragraph, write_report


def d(mean, lo, hi, n=5):
    return {"mean": mean, "ci": None if lo is None else [lo, hi], "n": n}


ABOVE = d(0.030, 0.010, 0.050)    # paired against the control: above it
LEVEL = d(0.005, -0.015, 0.025)   # the interval against the control includes 0
BELOW = d(-0.020, -0.035, -0.005)  # under it


@pytest.mark.parametrize("diff, vs_control, needs, verdict", [
    (d(0.050, 0.030, 0.070), ABOVE, True, "helps"),                              # above none and above the control
    (d(0.050, 0.030, 0.070), LEVEL, True, "level with the control"),             # above none, not above the control
    (d(0.050, 0.030, 0.070), d(0.010, 0.000, 0.020), True, "level with the control"),  # touching 0 is not above
    (d(0.015, 0.005, 0.025), BELOW, True, "below the control"),
    (d(0.015, 0.005, 0.025), None, True, "not tested against the control"),      # control not run
    (d(0.015, 0.005, 0.025), d(0.010, None, None, n=1), True, "not tested against the control"),  # one pair
    (d(0.015, 0.005, 0.025), None, False, "helps"),                              # real-image strategy: no control
    (d(0.015, 0.005, 0.025), BELOW, False, "helps"),                             # ... even beside one
    (d(0.010, -0.010, 0.030), ABOVE, True, "within noise"),
    (d(0.010, 0.000, 0.020), ABOVE, True, "within noise"),                       # touching 0 does not exclude it
    (d(-0.010, -0.020, 0.000), ABOVE, True, "within noise"),
    (d(-0.030, -0.050, -0.010), ABOVE, True, "below none"),
    (d(-0.030, -0.050, -0.010), None, False, "below none"),
    (d(0.100, None, None, n=1), ABOVE, True, "no interval"),
])
def test_verdict_rule(diff, vs_control, needs, verdict):
    assert strategy_verdict(diff, vs_control, needs_control=needs) == verdict
    assert verdict in VERDICTS


def test_verdict_on_paired_runs_and_bad_input():
    none = [0.70, 0.72, 0.71, 0.69, 0.73]
    oversample = [0.72, 0.74, 0.73, 0.71, 0.75]                             # +0.020 over none, every seed
    synth = [0.75, 0.78, 0.76, 0.73, 0.79]                                  # +0.030 over the control, every seed
    # +0.040 over none and +0.020 over the control on average, but by one seed's luck against the control:
    genmix = [0.73, 0.75, 0.74, 0.72, 0.81]
    assert strategy_verdict(paired_difference(synth, none), paired_difference(synth, oversample)) == "helps"
    assert strategy_verdict(paired_difference(genmix, none),
                            paired_difference(genmix, oversample)) == "level with the control"
    assert strategy_verdict(paired_difference(oversample, none), None, needs_control=False) == "helps"
    with pytest.raises(TypeError, match="vs_none"):
        strategy_verdict([0.1, 0.2])
    with pytest.raises(TypeError, match="vs_control"):
        strategy_verdict(paired_difference(synth, none), 0.02)
    with pytest.raises(TypeError, match="vs_control"):
        strategy_verdict(paired_difference(synth, none), {"mean": 0.02})  # a mean alone is not a comparison


def test_the_report_layer_applies_the_control_to_generative_strategies_only():
    paired = {"mixup": {"macro_f1": d(0.015, 0.005, 0.025)},
              "oversample": {"macro_f1": d(0.020, 0.010, 0.030)},
              "synth@diffusion": {"macro_f1": d(0.015, 0.005, 0.025)},
              "edit": {"macro_f1": d(0.015, 0.005, 0.025)},
              "gemix+remix": {"macro_f1": d(0.050, 0.030, 0.070)},
              "diffmix": {"macro_f1": d(-0.030, -0.050, -0.010)}}
    vs_control = {"mixup": {"macro_f1": BELOW},  # ignored: mixup works on real images only
                  "synth@diffusion": {"macro_f1": LEVEL}, "edit": {"macro_f1": BELOW},
                  "gemix+remix": {"macro_f1": ABOVE}, "diffmix": {"macro_f1": BELOW}}
    verdicts = {s: v for s, (v, _, _) in strategy_verdicts(paired, vs_control=vs_control).items()}
    assert verdicts == {"mixup": "helps", "oversample": "helps", "synth@diffusion": "level with the control",
                        "edit": "below the control", "gemix+remix": "helps", "diffmix": "below none"}
    text = verdict_paragraph(paired, several=True, has_none=True, vs_control=vs_control)
    assert text.startswith("**Verdict:** `mixup` (+0.015), `oversample` (+0.020, the control), `gemix+remix` "
                           "(+0.050) help on test macro-F1")
    assert "its paired interval against the `oversample` control lies above 0 as well" in text
    assert ("Above `none` but level with `oversample` (the interval against it includes 0): "
            "`synth@diffusion` (+0.015)") in text
    assert "above `none` but below `oversample` (the interval against it lies under 0): `edit` (+0.015)" in text
    assert "below `none` (the interval lies under 0): `diffmix` (-0.030)" in text
    assert "\n" not in text
    without = {k: v for k, v in paired.items() if k != "oversample"}
    text = verdict_paragraph(without, several=True, has_none=True)
    assert "the `oversample` control was not run, so no generative strategy can be called helpful" in text
    assert "Above `none`, but the `oversample` control was not run: `synth@diffusion` (+0.015), `edit` (+0.015), " \
           "`gemix+remix` (+0.050)" in text
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
          "genmix": [0.73, 0.75, 0.74, 0.72, 0.81],   # mean above the control's, interval against it not
          "edit": [0.715, 0.735, 0.725, 0.705, 0.745],  # above none, under the control on every seed
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
    assert "level with `oversample` (the interval against it includes 0): `genmix` (+0.040)" in verdict
    assert "below `oversample` (the interval against it lies under 0): `edit` (+0.015)" in verdict
    assert "within noise (the interval includes 0): `mixup` (+0.002)" in verdict
    assert report.index(verdict) < report.index("| Strategy |")  # before every table
    table = report.split("Verdicts (")[1]
    assert "| synth | +0.052 [" in table and "| +0.032 [+0.022, +0.042] | helps |" in table
    assert "| genmix | +0.040 [" in table and "| +0.020 [" in table and "| level with the control |" in table
    assert "| edit | +0.015 [" in table and "| below the control |" in table
    assert "| mixup | +0.002 [" in table and "| — | within noise |" in table

    one = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=list(f1), seeds=1))
    report = write_report(tmp_path, one, _dataset(), [(s, 0, None) for s in f1], {}).read_text()
    assert report.split("\n\n")[1].startswith("**Verdict:** one run per strategy")


def test_the_sweep_pairs_each_ratio_with_the_control_at_that_ratio(tmp_path):
    """At ratio 1 synth beats the control on every seed; at ratio 0.5 it is above none by as much
    as the control. A verdict paired with the wrong ratio's control would swap them."""
    f1 = {"none": [0.70, 0.72, 0.71, 0.69, 0.73],
          "oversample": [0.74, 0.76, 0.75, 0.73, 0.77],     # ratio 0.5: +0.04
          "synth": [0.745, 0.765, 0.74, 0.735, 0.775],      # ratio 0.5: level with the control
          "oversample-r1": [0.71, 0.73, 0.72, 0.70, 0.74],  # ratio 1: +0.01
          "synth-r1": [0.73, 0.75, 0.74, 0.72, 0.76]}       # ratio 1: +0.02 over the control, every seed
    for strategy, values in f1.items():
        _write_runs(tmp_path, strategy, values)
    runs = [(s, seed, None) for s in ("none", "oversample", "synth") for seed in range(5)]
    sweep = {"ratios": [0.5, 1.0], "share": 0.5, "runs": [(s, seed, None) for s in ("oversample-r1", "synth-r1")
                                                          for seed in range(5)],
             "labels": {"oversample": {0.5: "oversample", 1.0: "oversample-r1"},
                        "synth": {0.5: "synth", 1.0: "synth-r1"}}}
    cfg = make_config("tiny", {}, dict(data="toy", out=str(tmp_path), strategies=["none", "oversample", "synth"],
                                       seeds=5, synth_ratios=[0.5, 1.0]))
    report = write_report(tmp_path, cfg, _dataset(), runs, {}, sweep=sweep).read_text()
    rows = {line.split(" | ")[0]: line for line in report.split("## Synthetic-ratio sweep")[1].splitlines()
            if line.startswith("| ")}
    assert rows["| synth"].endswith(", level with the control | +0.030 [+0.030, +0.030], helps |")
    assert rows["| oversample"].endswith(", helps | +0.010 [+0.010, +0.010], helps |")
