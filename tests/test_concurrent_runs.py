"""Several classifier runs at once (genmix.training.concurrent, `genmix experiment
--concurrent-runs N`): the pool's contract, a run trained beside others equal to the run trained
alone, and an experiment whose runner is killed with kill -9 mid-way resuming to the same result
without redoing finished runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genmix.errors import UserRunError
from genmix.training.concurrent import RunPool, WorkerDied

ROOT = Path(__file__).parents[1]


# ------------------------------------------------------------------ the pool

def _square(x):
    return x * x


def _threads(_):
    return torch.get_num_threads(), os.getppid()


def _fail(x):
    if x == 2:
        raise UserRunError(f"task {x} failed")
    time.sleep(0.2)
    return x


def _die(x):
    if x == 1:
        os._exit(7)
    return x


@pytest.fixture(scope="module")
def pool():
    with RunPool(2, threads=1) as p:
        yield p


def test_pool_runs_every_task_in_order_with_its_thread_share(pool):
    done = []
    assert pool.run(_square, [(i,) for i in range(5)], on_done=lambda i, r: done.append((i, r))) == [0, 1, 4, 9, 16]
    assert sorted(done) == [(i, i * i) for i in range(5)]
    assert pool.run(_threads, [(0,), (1,)]) == [(1, os.getpid())] * 2


def test_pool_raises_the_first_failure_with_its_type_after_the_running_tasks_finish(pool):
    done = []
    with pytest.raises(UserRunError, match="task 2 failed"):
        pool.run(_fail, [(i,) for i in range(6)], on_done=lambda i, r: done.append(i))
    assert 2 not in done and {0, 1} <= set(done) and not {4, 5} & set(done)  # no new task after the failure
    assert pool.run(_square, [(3,)]) == [9]  # the pool is still usable


def test_pool_reports_a_worker_that_died():
    with RunPool(1, threads=1) as one:
        with pytest.raises(WorkerDied, match="exit code 7"):
            one.run(_die, [(0,), (1,), (2,)])


def test_pool_rejects_bad_sizes():
    with pytest.raises(ValueError, match="workers"):
        RunPool(0)
    with pytest.raises(ValueError, match="threads"):
        RunPool(1, threads=0)


# ------------------------------------------------------------------ experiments

def _npz(path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 64), ("val", 24), ("test", 24)):
        labels = np.arange(n) % 2
        x = rng.normal(80, 25, (n, 12, 12))
        x[labels == 1, 2:7, 2:7] += 90
        arrays[f"{split}_images"] = x.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    np.savez(path, **arrays)
    return str(path)


STRATEGIES = ["none", "cutmix"]
SEEDS = 2


def _command(data, out, workers):
    return [sys.executable, "-m", "genmix", "experiment", "--data", data, "--out", str(out), "--preset", "tiny",
            "--strategies", ",".join(STRATEGIES), "--seeds", str(SEEDS), "--epochs", "2",
            "--concurrent-runs", str(workers), "--no-progress"]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _run_dirs(out):
    return sorted(p.parent for p in Path(out).glob("runs/*/*/stage.json"))


def _done(out):
    return [d for d in _run_dirs(out) if json.loads((d / "stage.json").read_text()).get("done")]


def _result(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    weights = load_file(str(run_dir / "best.safetensors"))
    return ({k: metrics[k] for k in ("accuracy", "macro_f1", "auc", "nll", "ece", "confusion_matrix")},
            {k: v for k, v in weights.items()})


def _same(a, b):
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted experiment with two runs at a time."""
    root = tmp_path_factory.mktemp("concurrent")
    data = _npz(root / "data.npz")
    out = root / "reference"
    done = subprocess.run(_command(data, out, 2), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "report.md").is_file() and len(_done(out)) == len(STRATEGIES) * SEEDS
    return data, out


def test_a_run_trained_beside_others_equals_the_run_trained_alone(reference, tmp_path):
    from genmix.data import load_dataset
    from genmix.evaluation.classifier import evaluate_run
    from genmix.pipeline import _classifier_config, _generator_key, make_config
    from genmix.training.classifier import train_classifier

    data, out = reference
    cfg = make_config("tiny", {}, dict(data=data, out=str(out), strategies=STRATEGIES, seeds=SEEDS, epochs=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of the experiment's two workers had
    try:
        for strategy in ("cutmix",):
            alone = tmp_path / strategy
            dataset = load_dataset(data)
            train_classifier(dataset, alone, _classifier_config(cfg, strategy, 1, out, _generator_key(cfg, None)),
                             progress=False)
            evaluate_run(alone, dataset, split="test", n_boot=500, feature_method="pca")
            assert _same(_result(alone), _result(out / "runs" / strategy / "seed1")), strategy
    finally:
        torch.set_num_threads(threads)


def _children(pid):
    """Pids of the live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_a_concurrent_experiment_killed_with_sigkill_resumes_to_the_same_result(reference, tmp_path):
    data, ref = reference
    out = tmp_path / "killed"
    runner = subprocess.Popen(_command(data, out, 2), env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    workers, deadline = [], time.monotonic() + 300
    while not _done(out) and runner.poll() is None and time.monotonic() < deadline:
        workers = _children(runner.pid) or workers
        time.sleep(0.02)
    assert runner.poll() is None, "the experiment ended before it could be killed"
    finished = {d.name + d.parent.name: (d / "best.safetensors").stat().st_mtime_ns for d in _done(out)}
    assert 1 <= len(finished) < len(STRATEGIES) * SEEDS
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    end = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < end:
        time.sleep(0.05)
    assert workers and not any(_alive(w) for w in workers), "workers outlived the runner"

    again = subprocess.run(_command(data, out, 2), env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    for d in _run_dirs(out):
        assert _same(_result(d), _result(ref / "runs" / d.parent.name / d.name)), d
        if d.name + d.parent.name in finished:  # not redone: one start, the same files
            assert len(json.loads((d / "run.json").read_text())["starts"]) == 1
            assert (d / "best.safetensors").stat().st_mtime_ns == finished[d.name + d.parent.name]
    assert (out / "report.md").is_file()
