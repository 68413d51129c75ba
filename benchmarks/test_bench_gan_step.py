"""A full StyleGAN2-ADA training iteration (G step, D step, lazy R1 every 4th step, ADA, EMA)
with the fused ops (impl="auto") against the pure-PyTorch reference (impl="ref").

Reported per row: images/s and s/kimg (extra_info), and peak memory (CUDA allocator peak on GPU;
on CPU the process's peak resident set, which includes everything the process ran before). Run: pytest benchmarks --benchmark-only -k gan_step
"""

import resource

import pytest
import torch

from bench_utils import DEVICES, sync
from genmix.training.gan import GANConfig, GANTrainer

# (resolution, batch, channel_base, channel_max): StyleGAN2's small-data widths on GPU; CPU keeps
# the cpu-tiny preset's widths so a round takes seconds.
SHAPES = {
    "cuda": [(32, 32, 16384, 512), (128, 32, 16384, 512)],
    "cpu": [(32, 16, 4096, 128), (128, 4, 2048, 64)],
}
CASES = [(dev, impl, shape) for dev in DEVICES for impl in ("ref", "auto") for shape in SHAPES[dev]]


def _trainer(device, impl, resolution, batch, channel_base, channel_max):
    cfg = GANConfig(resolution=resolution, channels=1, num_classes=3, batch=batch, channel_base=channel_base,
                    channel_max=channel_max, z_dim=128, w_dim=256, mapping_layers=2, r1_interval=4,
                    aug="ada", impl=impl)
    images = torch.rand(256, 1, resolution, resolution) * 2 - 1
    labels = torch.arange(256) % 3
    from genmix.training.distributed import DistInfo

    trainer = GANTrainer(cfg, images, labels, DistInfo(device=torch.device(device)))
    trainer.augment.p.fill_(0.3)  # augmentations actually run, as in a real ADA run
    return trainer


@pytest.mark.parametrize("device, impl, shape", CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_gan_step(benchmark, device, impl, shape):
    resolution, batch = shape[:2]
    benchmark.group = f"gan-4steps-{device}-{resolution}px-batch{batch}"  # timed: 4 iterations
    trainer = _trainer(device, impl, *shape)
    for _ in range(4):  # warm-up covers one R1 step as well
        trainer.step()
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def four_steps():  # one lazy-R1 period, so every round has the same mix of work
        for _ in range(4):
            trainer.step()
        sync(device)

    benchmark.pedantic(four_steps, rounds=3 if device == "cpu" else 10, iterations=1)
    per_step = benchmark.stats.stats.mean / 4
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads",
        impl=impl, baseline=impl == "ref", images_per_s=batch / per_step, s_per_kimg=per_step * 1000 / batch,
        peak_memory_mb=peak / 2**20)
