"""A full StyleGAN2-ADA training iteration (G step, D step, lazy R1 every 4th step, ADA, EMA)
with the fused ops (impl="auto") against the pure-PyTorch reference (impl="ref").

The two implementations are timed interleaved: each timed round of one runs right after an
untimed round of the other (pytest-benchmark's setup hook), so on a shared, noisy machine both
see the same load and their ratio means something even when the absolute times drift. CPU rows
come at the default thread count and single-threaded (group suffix "-1thread").

Reported per row: images/s and s/kimg (extra_info), and peak memory (CUDA allocator peak on GPU;
on CPU the process's peak resident set, which includes everything the process ran before). Run: pytest benchmarks --benchmark-only -k gan_step
"""

import resource
import time

import pytest
import torch

from bench_utils import DEVICES, sync
from genmix.training.gan import GANConfig, GANTrainer

# (resolution, batch, channel_base, channel_max, z_dim, w_dim): StyleGAN2's small-data widths on
# GPU; on CPU the cpu-tiny preset's networks (32 px: 64 channels up to 16 px, 32 at 32 px) and the
# same widths at 64 px (16 channels at 64 px).
SHAPES = {
    "cuda": [(32, 32, 16384, 512, 128, 256), (128, 32, 16384, 512, 128, 256)],
    "cpu": [(32, 16, 1024, 64, 64, 128), (64, 16, 1024, 64, 64, 128)],
}
ROUNDS = {"cpu": 6, "cuda": 10}
# CPU rows at the default thread count and, where that is more than one, single-threaded too: on
# a shared machine a busy core stalls every OpenMP barrier, and one thread shows the work itself.
THREADS = {"cpu": sorted({torch.get_num_threads(), 1}, reverse=True), "cuda": [None]}
CASES = [(dev, impl, shape, threads) for dev in DEVICES for threads in THREADS[dev] for shape in SHAPES[dev]
         for impl in ("ref", "auto")]

_trainers = {}


def _trainer(device, impl, resolution, batch, channel_base, channel_max, z_dim, w_dim):
    key = (device, impl, resolution, batch, channel_base, channel_max, z_dim, w_dim)
    if key not in _trainers:
        cfg = GANConfig(resolution=resolution, channels=1, num_classes=3, batch=batch,
                        channel_base=channel_base, channel_max=channel_max, z_dim=z_dim, w_dim=w_dim,
                        mapping_layers=2, r1_interval=4, aug="ada", impl=impl)
        gen = torch.Generator().manual_seed(0)
        images = torch.rand(256, 1, resolution, resolution, generator=gen) * 2 - 1
        labels = torch.arange(256) % 3
        from genmix.training.distributed import DistInfo

        trainer = GANTrainer(cfg, images, labels, DistInfo(device=torch.device(device)))
        trainer.augment.p.fill_(0.3)  # augmentations actually run, as in a real ADA run
        for _ in range(4):  # warm-up covers one R1 step as well
            trainer.step()
        sync(device)
        _trainers[key] = trainer
    return _trainers[key]


def _four_steps(trainer, device, cpu_times=None):
    def run():  # one lazy-R1 period, so every round has the same mix of work
        start = time.process_time()
        for _ in range(4):
            trainer.step()
        sync(device)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - start)
    return run


@pytest.fixture
def threads(request):
    count = request.param
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    yield count
    torch.set_num_threads(before)


@pytest.mark.parametrize("device, impl, shape, threads", CASES, indirect=["threads"],
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_gan_step(benchmark, device, impl, shape, threads):
    resolution, batch = shape[:2]
    benchmark.group = f"gan-4steps-{device}-{resolution}px-batch{batch}"  # timed: 4 iterations
    if device == "cpu" and threads != THREADS["cpu"][0]:
        benchmark.group += f"-{threads}thread"
    trainer = _trainer(device, impl, *shape)
    other = _trainer(device, "ref" if impl == "auto" else "auto", *shape)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def interleave():  # untimed: a round of the other implementation just before each timed one
        _four_steps(other, device)()

    cpu_times = []  # process CPU time per round: with one thread, the work without the waiting
    benchmark.pedantic(_four_steps(trainer, device, cpu_times), setup=interleave, rounds=ROUNDS[device],
                       iterations=1)
    per_step = benchmark.stats.stats.mean / 4
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads",
        impl=impl, baseline=impl == "ref", images_per_s=batch / per_step, s_per_kimg=per_step * 1000 / batch,
        s_per_kimg_min=benchmark.stats.stats.min / 4 * 1000 / batch,
        s_per_kimg_median=benchmark.stats.stats.median / 4 * 1000 / batch,
        cpu_s_per_round=cpu_times, peak_memory_mb=peak / 2**20)
