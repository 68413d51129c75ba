"""scripts/gpu-check.sh and the opt-in reporting it relies on in tests/conftest.py.

The reporting is checked by running pytest in a subprocess on a small generated test file, with
this suite's conftest.py copied beside it: GENMIX_FAILED_LOG gets each failure's id the moment
it fails (also from pytest-xdist workers, once each), GENMIX_TEST_TIMEOUT fails a test that runs
too long. The script is checked through its --dry-run plan, which needs no GPU.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
BASH = shutil.which("bash")

# The log file is read back by a later test of the same run: a failure is on disk before pytest
# moves on, not only in the summary at the end.
INNER_TESTS = '''
import os
import time

import pytest


@pytest.fixture
def broken():
    raise RuntimeError("the fixture broke")


def test_passes():
    pass


def test_fails():
    assert 1 == 2, "one is not two"


def test_errors_in_setup(broken):
    pass


@pytest.mark.skip(reason="skipped on purpose")
def test_skipped():
    pass


def test_the_failures_are_already_logged():
    path = os.environ.get("GENMIX_FAILED_LOG")
    if path:
        text = open(path).read()
        assert "test_fails" in text and "test_errors_in_setup" in text


def test_sleeps():
    time.sleep(float(os.environ.get("INNER_SLEEP", "0")))
'''


def _inner_pytest(tmp_path, *args, env=None, timeout=120):
    """Run pytest on the generated tests with this suite's conftest.py beside them."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("GENMIX_FAILED_LOG", "GENMIX_TEST_TIMEOUT", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    full_env.update(env or {})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:timeout", "-q",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py"), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=full_env, timeout=timeout)
    return done, time.monotonic() - started


def _lines(path: Path) -> list:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_failed_log_gets_each_failure_with_its_reason_as_it_happens(tmp_path):
    log = tmp_path / "failed.txt"
    done, _ = _inner_pytest(tmp_path, env={"GENMIX_FAILED_LOG": str(log)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 passed" in done.stdout and "1 failed" in done.stdout and "1 error" in done.stdout, done.stdout
    lines = _lines(log)
    assert len(lines) == 2, lines
    assert lines[0] == "FAILED test_inner.py::test_fails - AssertionError: one is not two"
    assert lines[1] == "ERROR test_inner.py::test_errors_in_setup (in setup) - RuntimeError: the fixture broke"


def test_failed_log_appends_and_is_off_without_the_variable(tmp_path):
    log = tmp_path / "failed.txt"
    log.write_text("FAILED an earlier step's test - kept\n")
    _inner_pytest(tmp_path, "-k", "test_fails", env={"GENMIX_FAILED_LOG": str(log)})
    assert _lines(log) == ["FAILED an earlier step's test - kept",
                           "FAILED test_inner.py::test_fails - AssertionError: one is not two"]
    done, _ = _inner_pytest(tmp_path, "-k", "test_fails")
    assert done.returncode == 1
    assert len(_lines(log)) == 2  # nothing written without GENMIX_FAILED_LOG


def test_failed_log_gets_a_collection_error(tmp_path):
    log = tmp_path / "failed.txt"
    (tmp_path / "test_broken.py").write_text("import genmix_no_such_module_here\n")
    done, _ = _inner_pytest(tmp_path, str(tmp_path / "test_broken.py"), "--continue-on-collection-errors",
                            "-k", "test_passes", env={"GENMIX_FAILED_LOG": str(log)})
    assert "1 passed" in done.stdout and "1 error" in done.stdout, done.stdout
    assert _lines(log) == ["ERROR test_broken.py (collection) - "
                           "ModuleNotFoundError: No module named 'genmix_no_such_module_here'"]


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist is not installed")
def test_failed_log_from_xdist_workers_has_each_failure_once(tmp_path):
    log = tmp_path / "failed.txt"
    done, _ = _inner_pytest(tmp_path, "-n", "2", "-k", "not already_logged", env={"GENMIX_FAILED_LOG": str(log)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert sorted(_lines(log)) == [
        "ERROR test_inner.py::test_errors_in_setup (in setup) - RuntimeError: the fixture broke",
        "FAILED test_inner.py::test_fails - AssertionError: one is not two"]


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGALRM"), reason="needs SIGALRM")
def test_test_timeout_fails_a_test_that_runs_too_long_and_goes_on(tmp_path):
    log = tmp_path / "failed.txt"
    done, seconds = _inner_pytest(tmp_path, "-k", "test_sleeps or test_passes",
                                  env={"GENMIX_FAILED_LOG": str(log), "GENMIX_TEST_TIMEOUT": "1.5",
                                       "INNER_SLEEP": "60"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    assert seconds < 45  # the 60 s sleep was cut at 1.5 s (the rest is interpreter start-up)
    assert _lines(log) == ["FAILED test_inner.py::test_sleeps - Failed: Timeout: the test ran longer than 1.5 s "
                           "(GENMIX_TEST_TIMEOUT)"]


def test_test_timeout_leaves_quick_tests_alone(tmp_path):
    done, _ = _inner_pytest(tmp_path, "-k", "test_sleeps or test_passes",
                            env={"GENMIX_TEST_TIMEOUT": "30", "INNER_SLEEP": "0.2"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


# ---------------------------------------------------------------------------------- the script

STEPS = ("build", "info", "tests", "opcheck", "resume", "experiment", "report")


def _dry_run(tmp_path, *args):
    data = tmp_path / "pneumoniamnist.npz"
    data.write_bytes(b"")
    env = dict(os.environ, GENMIX_WHEELS=str(tmp_path / "no-wheels"))
    done = subprocess.run([BASH, str(SCRIPT), "--dry-run", "--data", str(data), *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = {m.group(1): (int(m.group(2)), m.group(3))
            for m in re.finditer(r"^gpu-check: \[([\w-]+)\] timeout (\d+)s: (.*)$", done.stdout, re.M)}
    return done.stdout, plan


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_the_script_parses():
    done = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_dry_run_plans_every_step_within_the_default_budget(tmp_path):
    out, plan = _dry_run(tmp_path)
    assert list(plan) == list(STEPS), out
    budget = int(re.search(r"overall budget (\d+)s", out).group(1))
    assert 420 <= budget <= 540  # about 8 minutes of a 15-minute lease
    assert sum(seconds for seconds, _ in plan.values()) <= budget, out
    build, tests, opcheck = plan["build"][1], plan["tests"][1], plan["opcheck"][1]
    assert "--no-build-isolation --no-deps" in build and "GENMIX_CUDA=1" in build
    assert "-m cuda" in tests and "-rfE" in tests and "GENMIX_FAILED_LOG=" in tests and "GENMIX_TEST_TIMEOUT=" in tests
    assert ("-n 8" in tests) == (importlib.util.find_spec("xdist") is not None)
    assert "opcheck or compile" in opcheck and "GENMIX_FAILED_LOG=" in opcheck
    assert "train-gan" not in plan["resume"][1] and "resume_drill.py" in plan["resume"][1]
    experiment = plan["experiment"][1]
    assert "genmix experiment" in experiment and "--preset gpu" in experiment and "--device cuda" in experiment
    assert "gan_kimg" in out and "pneumoniamnist.npz" in experiment


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("budget", [300, 480, 900])
def test_dry_run_fits_the_plan_to_the_budget(tmp_path, budget):
    out, plan = _dry_run(tmp_path, "--budget", str(budget))
    assert sum(seconds for seconds, _ in plan.values()) <= budget, out
    assert {"build", "info", "report"} <= set(plan), out
    if budget >= 480:
        assert set(STEPS) <= set(plan), out
    if budget >= 900:
        assert "bench" in plan, out  # room for the optional benchmarks
    for step in set(STEPS) - set(plan):
        assert f"[{step}] not planned" in out, out


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_dry_run_without_data_says_the_experiment_is_skipped(tmp_path):
    env = dict(os.environ, GENMIX_WHEELS=str(tmp_path / "no-wheels"))
    # cwd has no shared/data, but the script looks from the repository root: give a missing file.
    done = subprocess.run([BASH, str(SCRIPT), "--dry-run", "--data", str(tmp_path / "absent.npz")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[experiment] skipped: no PneumoniaMNIST npz" in done.stdout
    assert "--data phantom" in done.stdout  # the resume drill still runs, on the embedded phantom


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_too_small_a_budget_is_refused(tmp_path):
    done = subprocess.run([BASH, str(SCRIPT), "--dry-run", "--budget", "60"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "too small" in done.stderr
