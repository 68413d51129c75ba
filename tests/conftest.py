"""Shared test setup: Triton runs under its CPU interpreter where there is no GPU, and the
backends under test are listed once. For time-boxed runs (scripts/gpu-check.sh), opt-in: each
failure's id written to a file as it happens (GENMIX_FAILED_LOG) and a per-test time limit
(GENMIX_TEST_TIMEOUT); see the end of this file."""

import os

import torch

if not torch.cuda.is_available():
    # Must be set before triton is imported anywhere.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------ time-boxed runs (opt-in)
# scripts/gpu-check.sh runs the suite inside a fixed slot and may kill it before pytest prints
# its summary. Two environment variables keep what a cut run learned:
#   GENMIX_FAILED_LOG=path     append "FAILED|ERROR <nodeid> - <one-line reason>" to `path` the
#                              moment a test fails or a test file fails to collect (one line per
#                              write, so pytest-xdist workers can share the file; a collection
#                              error may appear once per worker)
#   GENMIX_TEST_TIMEOUT=secs   fail a test whose setup or call runs longer than that (SIGALRM, main
#                              thread, where signals exist), unless pytest-timeout is installed:
#                              then use its --timeout instead.

def _failure_line(report) -> str:
    kind = "FAILED" if report.when == "call" else "ERROR"
    crash = getattr(report.longrepr, "reprcrash", None)
    reason = getattr(crash, "message", None) or str(report.longrepr or "")
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    reason = (lines[0] if crash is not None else lines[-1]) if lines else "(no message)"
    if len(reason) > 300:
        reason = reason[:297] + "..."
    where = "" if report.when == "call" else f" (in {report.when})"
    return f"{kind} {report.nodeid}{where} - {reason}\n"


def _append_failure(line: str) -> None:
    with open(os.environ["GENMIX_FAILED_LOG"], "a", buffering=1) as fh:
        fh.write(line)


def pytest_runtest_logreport(report):
    if not os.environ.get("GENMIX_FAILED_LOG") or not report.failed:
        return
    if getattr(report, "node", None) is not None:
        return  # pytest-xdist's controller replaying a worker's report: the worker wrote it already
    _append_failure(_failure_line(report))


def pytest_collectreport(report):
    if not os.environ.get("GENMIX_FAILED_LOG") or not report.failed or getattr(report, "node", None) is not None:
        return
    lines = [line.strip() for line in str(report.longrepr or "").splitlines() if line.strip()]
    reason = lines[-1].removeprefix("E").strip() if lines else "(no message)"
    _append_failure(f"ERROR {report.nodeid or '.'} (collection) - {reason[:300]}\n")


def _test_timeout(config) -> float:
    try:
        seconds = float(os.environ.get("GENMIX_TEST_TIMEOUT") or 0)
    except ValueError:
        return 0.0
    if seconds <= 0 or config.pluginmanager.hasplugin("timeout"):
        return 0.0
    return seconds


class _Alarm:
    """SIGALRM after `seconds`, failing the running test; a no-op off the main thread or where
    the platform has no SIGALRM. A test stuck inside one C call fails when the call returns."""

    def __init__(self, seconds: float, what: str):
        import signal
        import threading

        self.seconds, self.what, self.signal = seconds, what, signal
        self.active = (seconds > 0 and hasattr(signal, "SIGALRM")
                       and threading.current_thread() is threading.main_thread())

    def _ring(self, signum, frame):
        pytest.fail(f"Timeout: {self.what} ran longer than {self.seconds:g} s (GENMIX_TEST_TIMEOUT)", pytrace=False)

    def __enter__(self):
        if self.active:
            self.previous = self.signal.signal(self.signal.SIGALRM, self._ring)
            self.signal.setitimer(self.signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        if self.active:
            self.signal.setitimer(self.signal.ITIMER_REAL, 0)
            self.signal.signal(self.signal.SIGALRM, self.previous)
        return False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _Alarm(_test_timeout(item.config), "setup"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _Alarm(_test_timeout(item.config), "the test"):
        yield
