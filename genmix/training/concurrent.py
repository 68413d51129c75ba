"""Several runs at once on one device: a pool of worker processes, one run at a time in each.

Why processes. The runs an experiment trains side by side differ in everything a training loop
branches on: strategy and mixer, synthetic pool or appended set, training-set size (so the number
of steps per epoch), and when early stopping ends them. Each keeps its own RNG streams, run
folder, checkpoints, `--resume` and report row. A process per run keeps all of that exactly as a
run alone has it (the same code path, the same streams, the same files), so a run trained beside
others is the run trained alone: bit-identical on the CPU when each worker has one thread, as
a lone run with one thread (the thread count changes the CPU's reduction order, see
`genmix.training.run.host_record`). The alternatives were weighed: stacking same-shaped models
with torch.func (functional_call + vmap over stacked parameters) batches their kernels, but only
for runs in lockstep (same strategy, same batch count, same epoch, none stopped early), with a
stacked checkpoint that no single run can resume from; CUDA streams in one process share one
Python interpreter, whose lock serialises exactly the host work (launching kernels, mixing,
bookkeeping) that leaves a GPU waiting on small models. Several processes put several host
threads to work for one GPU, whose memory (141 GB on an H200) holds dozens of ResNet-18 runs;
under NVIDIA MPS their kernels also run side by side on the device.

The workers are long-lived (the imports and a CUDA context are paid once per worker, not per
run), started with the spawn method (never a fork of a process holding a CUDA context or
threads), each with its share of the CPU threads, and they die with the process that started
them (PR_SET_PDEATHSIG on Linux, and a watchdog on the parent's pid), so a runner killed with
kill -9 leaves no worker writing into a run folder that a rerun then resumes.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from typing import Callable, Iterable, Optional

__all__ = ["RunPool", "WorkerDied", "default_threads"]


class WorkerDied(RuntimeError):
    """A worker process ended (crashed, or was killed) while it ran a task."""


def default_threads(workers: int) -> int:
    """CPU threads per worker: the machine's cores shared out evenly, at least one."""
    return max(1, (os.cpu_count() or 1) // max(int(workers), 1))


def _die_with_parent(parent_pid: int) -> None:
    """Leave as soon as the starting process is gone, however it ended."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # it ended before the line above took effect
        os._exit(1)

    def watch():
        import time

        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="genmix-parent-watch").start()


def _worker_main(conn, threads: int, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(threads)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, args, kwargs = message
        try:
            result = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            result = ("error", exc, traceback.format_exc())
        try:
            conn.send(result)
        except Exception as exc:  # the result or the exception does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}"), traceback.format_exc()))


class RunPool:
    """`workers` long-lived processes; `run(fn, tasks)` runs `fn(*task)` for every task, at most
    `workers` at a time, and calls `on_done(i, result)` in this process as each one finishes.

    fn must be a module-level function (it is pickled by name) and tasks and results picklable.
    The first failure stops the dispatch of new tasks; the ones already running finish (their
    `on_done` still runs), then the failure is raised again here, its type kept (a worker that
    died raises WorkerDied). threads: torch threads per worker (default: `default_threads`).
    """

    def __init__(self, workers: int, *, threads: Optional[int] = None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
        import multiprocessing as mp

        self.threads = threads or default_threads(workers)
        ctx = mp.get_context("spawn")
        self._procs, self._conns = [], []
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        try:
            for name in saved:  # inherited by the workers before torch starts its thread pools
                os.environ[name] = str(self.threads)
            for _ in range(workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(child, self.threads, os.getpid()), daemon=True,
                                   name="genmix-run-worker")
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
        except BaseException:
            self.close()
            raise
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    @property
    def workers(self) -> int:
        return len(self._procs)

    def run(self, fn: Callable, tasks: Iterable, on_done: Optional[Callable] = None,
            on_start: Optional[Callable] = None) -> list:
        """Results in task order. `on_start(i)` runs just before task i is handed to a worker."""
        from multiprocessing.connection import wait

        tasks = [tuple(t) for t in tasks]
        results: list = [None] * len(tasks)
        todo = list(range(len(tasks)))
        busy: dict = {}            # worker index -> task index
        failure = None
        while todo or busy:
            for w in range(self.workers):
                if failure is None and todo and w not in busy and self._procs[w].is_alive():
                    i = todo.pop(0)
                    if on_start is not None:
                        on_start(i)
                    self._conns[w].send((fn, tasks[i], {}))
                    busy[w] = i
            if not busy:
                if todo and failure is None:
                    failure = WorkerDied("every worker process has ended")
                break
            ready = wait([self._conns[w] for w in busy] + [self._procs[w].sentinel for w in busy])
            for w in list(busy):
                conn, proc = self._conns[w], self._procs[w]
                if conn in ready:
                    try:
                        reply = conn.recv()
                    except (EOFError, OSError):
                        reply = None
                elif proc.sentinel in ready:
                    reply = None
                else:
                    continue
                i = busy.pop(w)
                if reply is None:
                    proc.join(timeout=1)
                    failure = failure or WorkerDied(f"a worker process ended (exit code {proc.exitcode}) "
                                                    f"while it ran task {i}: {tasks[i]!r}")
                elif reply[0] == "ok":
                    results[i] = reply[1]
                    if on_done is not None:
                        on_done(i, reply[1])
                else:
                    exc, text = reply[1], reply[2]
                    if failure is None:
                        failure = exc
                        failure.__notes__ = list(getattr(exc, "__notes__", [])) + [f"in a worker process:\n{text}"]
        if failure is not None:
            raise failure
        return results

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._procs, self._conns = [], []

    def __enter__(self) -> "RunPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
