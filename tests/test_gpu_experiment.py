"""scripts/gpu-experiment.sh, through its --dry-run plan (no GPU needed): the shell is clean, the
plan is the MedMNIST comparison the script promises, its command is one genmix's CLI accepts
with settings genmix knows, and bad arguments end in one line and exit 2."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-experiment.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")


def _run(*args):
    return subprocess.run([BASH, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_script_parses():
    done = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    data = tmp_path_factory.mktemp("gpu-exp") / "pneumoniamnist.npz"
    import numpy as np

    arrays = {f"{s}_{k}": np.zeros((n, 28, 28) if k == "images" else (n, 1), dtype=np.uint8)
              for s, n in (("train", 4708), ("val", 524), ("test", 624)) for k in ("images", "labels")}
    np.savez(data, **arrays)
    done = _run("--dry-run", "--data", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, str(data)


def test_the_dry_run_plan_is_the_medmnist_comparison(plan):
    out, data = plan
    from genmix.mixing import STRATEGIES

    strategies = re.search(r"strategies (\S+);", out).group(1).split(",")
    expected = ["none", "mixup", "cutmix", "synth", "genmix", "gemix"]
    assert strategies[:6] == expected
    assert ("oversample" in strategies) == ("oversample" in STRATEGIES)  # the control, whenever registered
    assert "5 seeds" in out and "training fractions 0.1,1.0" in out and "(4708 training images)" in out
    assert "preset medmnist (ResNet-18, 28 px, batch 128, epochs 100, patience 20 on val macro-F1)" in out
    assert "generator diffusion, preset gpu" in out and "8 classifier runs at once" in out
    times = re.findall(r"^\s+~\s*(\d+) s\s+(.*)$", out, re.M)
    assert any("classifiers at 1:" in name for _, name in times) and times[-1][1].startswith("in all")
    assert sum(int(s) for s, _ in times[:-1]) == pytest.approx(int(times[-1][0]), abs=len(times))
    assert "wall-clock: N s" in out and "copied to $OUT" in out


def test_the_planned_command_is_one_genmix_accepts(plan, tmp_path):
    from genmix.cli import build_parser
    from genmix.pipeline import make_config

    out, data = plan
    line = re.search(r"\[experiment\] timeout [^:]*: (.*)$", out, re.M).group(1)
    argv = shlex.split(line)
    assert argv[1:4] == ["-m", "genmix", "experiment"]
    args = build_parser().parse_args(argv[3:])
    assert args.data == data and args.device == "cuda" and args.concurrent_runs == 8
    toml = re.search(r"experiment\.toml: (.*)$", out, re.M).group(1)
    values = dict(item.split(" = ") for item in toml.split("; "))
    file_values = {k: (v == "true" if v in ("true", "false") else float(v)) for k, v in values.items()}
    cfg = make_config(args.preset, file_values, dict(data=args.data, out=str(tmp_path), seeds=args.seeds,
                                                       strategies=args.strategies.split(","), gan_arch=args.gan_arch,
                                                       gan_preset=args.gan_preset, concurrent_runs=args.concurrent_runs,
                                                       train_fractions=[float(v) for v in args.train_fractions.split(",")]))
    assert cfg.model == "resnet18" and cfg.batch == 128 and cfg.patience == 20 and cfg.seeds == 5
    assert 1.0 <= cfg.gan_budget_min <= 1.5 and not cfg.tstr and cfg.fid_n == 500


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
    for args in (["--budget", "soon"], ["--mps", "maybe"], ["--concurrent-runs", "0"], ["--colour"]):
        done = _run(*args, "--dry-run")
        assert done.returncode == 2, args
        assert done.stderr.startswith("gpu-experiment:") and done.stderr.count("\n") == 1, done.stderr


def test_without_data_the_dry_run_still_plans_and_a_real_run_refuses(tmp_path):
    done = _run("--dry-run", "--data", str(tmp_path / "missing.npz"))
    assert done.returncode == 0 and "(not found here)" in done.stdout
    done = _run("--data", str(tmp_path / "missing.npz"))
    assert done.returncode == 2 and "pass --data FILE.npz" in done.stderr
