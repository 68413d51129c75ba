"""The soft-label diffusion model: one training step (EDM loss, backward, Adam), one Heun
sampling step on a batch (plain conditional and with classifier-free guidance), and a full
18-step sampling run of 1,000 images, with the fused ops (impl="auto") against the pure-PyTorch
reference (impl="ref"). Default network size (`DiffusionUNet` defaults), grayscale, 32 px.

Reported per row (extra_info): images/s and s/kimg, for sampling those of a whole 18-step run
(35 network evaluations per image), and peak memory (CUDA allocator peak on GPU; on CPU the
process's peak resident set). Run: pytest benchmarks --benchmark-only -k diffusion
"""

import os
import resource

import pytest
import torch

from bench_utils import DEVICES, sync
from genmix.models.diffusion import DiffusionUNet, EDMPrecond, edm_heun_step, edm_loss, edm_sample, edm_sigma_steps

RESOLUTION, NUM_CLASSES = 32, 2
TRAIN_BATCH = {"cpu": 32, "cuda": 128}
SAMPLE_BATCH = {"cpu": 256, "cuda": 1024}
NFE_PER_IMAGE = 35  # 18 Heun steps: 2 evaluations each, the last step to sigma = 0 one


def _denoiser(device, impl):
    torch.manual_seed(0)
    unet = DiffusionUNet(RESOLUTION, 1, NUM_CLASSES, impl=impl)
    with torch.no_grad():  # a trained network has no all-zero layers; time that one
        for p in unet.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    return EDMPrecond(unet).to(device)


def _labels(n, device):
    return torch.eye(NUM_CLASSES, device=device)[torch.arange(n, device=device) % NUM_CLASSES]


def _record(benchmark, device, impl, images_per_round, images_per_unit=1.0):
    """images/s and s/kimg of the timed unit; `images_per_unit` scales a round to the unit
    reported (for a Heun step: the fraction of a whole sampling run it is)."""
    seconds = benchmark.stats.stats.mean / images_per_unit
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads",
        impl=impl, baseline=impl == "ref", images_per_s=images_per_round / seconds,
        s_per_kimg=seconds * 1000 / images_per_round, peak_memory_mb=peak / 2**20,
        load_average_1min=os.getloadavg()[0])  # a shared CPU makes every number here slower


def _reset_peak(device):
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


CASES = [(dev, impl) for dev in DEVICES for impl in ("ref", "auto")]


@pytest.mark.parametrize("device, impl", CASES)
def test_diffusion_train_step(benchmark, device, impl):
    batch = TRAIN_BATCH[device]
    benchmark.group = f"diffusion-train-step-{device}-{RESOLUTION}px-batch{batch}"
    denoiser = _denoiser(device, impl).train()
    opt = torch.optim.Adam(denoiser.parameters(), lr=1e-4)
    images = torch.rand(batch, 1, RESOLUTION, RESOLUTION, device=device) * 2 - 1
    labels = _labels(batch, device)
    g = torch.Generator(device).manual_seed(0)

    def step():
        loss = edm_loss(denoiser, images, labels, generator=g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)

    for _ in range(2):
        step()
    _reset_peak(device)
    benchmark.pedantic(step, rounds=5 if device == "cpu" else 20, iterations=1, warmup_rounds=1)
    _record(benchmark, device, impl, batch)


@pytest.mark.parametrize("guidance", [1.0, 2.0], ids=["cond", "cfg"])
@pytest.mark.parametrize("device, impl", CASES)
def test_diffusion_heun_step(benchmark, device, impl, guidance):
    # With guidance the batch runs conditional and unconditional halves together: half the images.
    batch = SAMPLE_BATCH[device] // (1 if guidance == 1 else 2)
    kind = "heun-step" if guidance == 1 else "heun-step-cfg"
    benchmark.group = f"diffusion-{kind}-{device}-{RESOLUTION}px-batch{batch}"
    denoiser = _denoiser(device, impl).eval()
    labels = _labels(batch, device)
    t = edm_sigma_steps(18)
    x = torch.randn(batch, 1, RESOLUTION, RESOLUTION, device=device, dtype=torch.float64) * float(t[8])

    def heun_step():  # a mid-schedule step: two network evaluations
        with torch.no_grad():
            edm_heun_step(denoiser, x, float(t[8]), float(t[9]), labels, guidance=guidance)
        sync(device)

    heun_step()
    _reset_peak(device)
    benchmark.pedantic(heun_step, rounds=3 if device == "cpu" else 20, iterations=1, warmup_rounds=1)
    # One Heun step is 2 of the 35 evaluations of an 18-step run.
    _record(benchmark, device, impl, batch, images_per_unit=2 / NFE_PER_IMAGE)


@pytest.mark.parametrize("device", DEVICES)
def test_diffusion_sample_1000(benchmark, device):
    """The requirement: 1,000 images at 32 px, 18 Heun steps, default network, impl=auto."""
    benchmark.group = f"diffusion-sample-1000-{device}-{RESOLUTION}px-18steps"
    denoiser = _denoiser(device, "auto")
    labels = _labels(1000, "cpu")
    edm_sample(denoiser, labels[:8], num_steps=2, batch=SAMPLE_BATCH[device])  # warm-up
    _reset_peak(device)
    benchmark.pedantic(lambda: edm_sample(denoiser, labels, num_steps=18, seed=0, batch=SAMPLE_BATCH[device]),
                       rounds=1, iterations=1)
    _record(benchmark, device, "auto", 1000)
    benchmark.extra_info["baseline"] = True  # the only row of its group
