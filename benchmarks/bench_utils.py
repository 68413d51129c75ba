"""Shared benchmark plumbing: devices and implementations to time, synchronised timing, and
the machine's measured copy bandwidth to compare memory-bound kernels with."""

import os
import time

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from genmix.ops import _backend  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def impls_for(device):
    """ref first (the baseline), then every compiled implementation usable on `device`.
    The Triton interpreter is a correctness tool, not a speed path: never timed on CPU."""
    names = ["ref"] + [n for n in _backend.PREFERENCE[device] if n != "ref"]
    return [n for n in names if _backend.unavailable_reason(n, torch.device(device)) is None]


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def run_timed(benchmark, device, fn, rounds):
    def call():
        fn()
        sync(device)

    call()  # warm-up: kernel compilation, allocator
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)


_bandwidth = {}


def copy_bandwidth_gbs(device):
    """Bytes read + written per second by a large device copy: the roofline for elementwise ops."""
    if device not in _bandwidth:
        n = (256 << 20) // 4 if device == "cuda" else (64 << 20) // 4
        src = torch.empty(n, device=device).normal_()
        dst = torch.empty_like(src)
        for _ in range(3):
            dst.copy_(src)
        sync(device)
        reps = 20 if device == "cuda" else 5
        start = time.perf_counter()
        for _ in range(reps):
            dst.copy_(src)
        sync(device)
        _bandwidth[device] = 2 * n * 4 * reps / (time.perf_counter() - start) / 1e9
    return _bandwidth[device]


def record(benchmark, device, impl, nbytes, baseline=None):
    """Attach the traffic and the achieved bandwidth to the benchmark's JSON record.

    `baseline` marks the row speed-ups are measured against (default: impl == "ref")."""
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads",
        impl=impl,
        bytes=nbytes,
        gbs=nbytes / mean / 1e9,
        copy_gbs=copy_bandwidth_gbs(device),
        baseline=(impl == "ref") if baseline is None else baseline,
    )
