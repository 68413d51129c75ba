"""Classifier training throughput (images/s): one run, and several runs at once on one device.

Rows per device (group `classifier-<device>-<model>-<px>px-batch<B>-<mix>`):
  host-loop     the baseline: the earlier step, written out here. Training images on the host,
                gathered there per batch and copied to the device, the mixer seeding its fused ops
                from a device generator, a per-step `torch.isfinite(loss)` check, torch's default
                optimiser; every step waits for the device at least once.
  trainer       `ClassifierTrainer.step()`: data resident on the device as uint8, batches
                gathered, flipped and mixed there, no host synchronisation per step (bfloat16
                autocast, channels_last and a fused optimiser on CUDA).
  concurrent-N  N runs at once, each `ClassifierTrainer.step()` in its own worker process
                (genmix.training.concurrent.RunPool, the CPU threads shared out): images/s of
                all N together, the wall time of a round being that of the slowest run.
CPU rows: the small CNN at 28 px, batch 64, 1,024 training images (runnable on a 2-core VM).
CUDA rows: ResNet-18 at 28 px, batch 128, 4,708 training images (PneumoniaMNIST's training set),
several runs at once with 4 and 8 workers. Random images and labels: throughput does not depend
on what the pixels show. A round is `STEPS` steps of every run; validation, checkpoints and
evaluation are not timed (an experiment adds them once per epoch or run).

    pytest benchmarks/test_bench_classifier.py --benchmark-only [--benchmark-json=out.json]
"""

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench_utils import DEVICES, sync

SETUP = {
    "cpu": dict(model="small_cnn", batch=64, n_train=1024, steps=8, rounds=3, workers=[2]),
    "cuda": dict(model="resnet18", batch=128, n_train=4708, steps=36, rounds=5, workers=[4, 8]),
}
SIZE, CLASSES = 28, 2


def _dataset(n_train, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        return SimpleNamespace(images=rng.integers(0, 256, (n, SIZE, SIZE, 1), dtype=np.uint8),
                               labels=rng.integers(0, CLASSES, n))

    return SimpleNamespace(splits={"train": split(n_train), "val": split(256)})


def _config(device, mix, seed=0):
    from genmix.training.classifier import ClassifierConfig

    s = SETUP[device]
    return ClassifierConfig(model=s["model"], mix=mix, batch=s["batch"], epochs=1000, hflip=True, seed=seed,
                            data_spec="random", num_classes=CLASSES, class_names=["a", "b"], channels=1,
                            resolution=[SIZE, SIZE]).validate()


def _trainer(device, mix, seed=0):
    from genmix.training import distributed as gdist
    from genmix.training.classifier import ClassifierTrainer

    dev = torch.device(device, 0) if device == "cuda" else torch.device("cpu")
    return ClassifierTrainer(_config(device, mix, seed), _dataset(SETUP[device]["n_train"]), gdist.DistInfo(device=dev))


def _steps(trainer, n):
    for _ in range(n):
        trainer.step()
        if trainer.period_done():  # the epoch's end without its validation (not timed here)
            trainer.state["epoch"] += 1
            trainer._order = trainer._losses = None


class HostLoop:
    """The earlier training step (the baseline): see the module docstring."""

    def __init__(self, device, mix):
        from genmix.mixing import make_mixer
        from genmix.training.classifier import _nchw_uint8, build_model

        cfg = self.cfg = _config(device, mix)
        data = _dataset(SETUP[device]["n_train"])
        self.dev = torch.device(device)
        self.x = _nchw_uint8(data.splits["train"].images)
        self.y = torch.from_numpy(np.eye(CLASSES, dtype=np.float32)[data.splits["train"].labels])
        torch.manual_seed(0)
        self.model = build_model(cfg).to(self.dev)
        if device == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.order_rng = torch.Generator().manual_seed(0)
        self.mixer = make_mixer(mix, CLASSES, generator=torch.Generator(device=self.dev).manual_seed(1))
        self.amp = device == "cuda"
        self.per_epoch = len(self.x) // cfg.batch
        self.i, self.order = 0, None

    def step(self):
        from genmix.training.classifier import _to_float

        b = self.cfg.batch
        if self.i % self.per_epoch == 0:
            self.order = torch.randperm(len(self.x), generator=self.order_rng)
            self.flips = torch.rand(len(self.x), generator=self.order_rng) < 0.5
            self.model.train()
        j = self.i % self.per_epoch
        idx = self.order[j * b:(j + 1) * b]
        x = _to_float(self.x[idx].to(self.dev, non_blocking=True))
        x = torch.where(self.flips[idx].to(self.dev).view(-1, 1, 1, 1), x.flip(3), x)
        x, y = self.mixer(x, self.y[idx].to(self.dev))
        if self.dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        loss = self.mixer.loss(logits.float(), y)
        if not torch.isfinite(loss):
            raise RuntimeError("non-finite loss")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.i += 1


def _record(benchmark, device, impl, images, *, runs=1, baseline=False):
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads",
        impl=impl, baseline=baseline, runs=runs, images_per_s=images / seconds,
        s_per_kimg=seconds * 1000 / images, load_average_1min=os.getloadavg()[0])


def _group(benchmark, device, mix):
    s = SETUP[device]
    benchmark.group = f"classifier-{device}-{s['model']}-{SIZE}px-batch{s['batch']}-{mix}"


MIXES = ["none", "mixup"]


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("device", DEVICES)
def test_classifier_host_loop(benchmark, device, mix):
    _group(benchmark, device, mix)
    s = SETUP[device]
    loop = HostLoop(device, mix)

    def round_():
        for _ in range(s["steps"]):
            loop.step()
        sync(device)

    round_()  # warm-up: cuDNN autotuning, lazy optimiser state
    benchmark.pedantic(round_, rounds=s["rounds"], iterations=1)
    _record(benchmark, device, "host-loop", s["steps"] * s["batch"], baseline=True)


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("device", DEVICES)
def test_classifier_trainer(benchmark, device, mix):
    _group(benchmark, device, mix)
    s = SETUP[device]
    trainer = _trainer(device, mix)

    def round_():
        _steps(trainer, s["steps"])
        sync(device)

    round_()
    benchmark.pedantic(round_, rounds=s["rounds"], iterations=1)
    _record(benchmark, device, "trainer", s["steps"] * s["batch"])


_WORKER_TRAINERS: dict = {}


def _worker_round(device, mix, seed, steps):
    """In a worker process: `steps` steps of this worker's own run (built on the first call)."""
    key = (device, mix, seed)
    if key not in _WORKER_TRAINERS:
        _WORKER_TRAINERS[key] = _trainer(device, mix, seed)
        _steps(_WORKER_TRAINERS[key], 2)  # warm-up
        sync(device)
    t0 = time.perf_counter()
    _steps(_WORKER_TRAINERS[key], steps)
    sync(device)
    return time.perf_counter() - t0


CONCURRENT = [(dev, mix, n) for dev in DEVICES for mix in MIXES for n in SETUP[dev]["workers"]]


@pytest.mark.parametrize("device, mix, workers", CONCURRENT)
def test_classifier_concurrent(benchmark, device, mix, workers):
    from genmix.training.concurrent import RunPool

    _group(benchmark, device, mix)
    s = SETUP[device]
    tasks = [(device, mix, seed, s["steps"]) for seed in range(workers)]
    with RunPool(workers) as pool:
        pool.run(_worker_round, tasks)  # start-up and warm-up of every worker's run, not timed
        benchmark.pedantic(lambda: pool.run(_worker_round, tasks), rounds=s["rounds"], iterations=1)
        threads = pool.threads
    _record(benchmark, device, f"concurrent-{workers}", workers * s["steps"] * s["batch"], runs=workers)
    benchmark.extra_info["threads_per_worker"] = threads
