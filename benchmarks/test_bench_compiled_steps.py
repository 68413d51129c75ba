"""Eager against torch.compile (inductor, fullgraph) for the two generator training steps: a
StyleGAN2 G+D loss with its backward (the main losses; R1 differentiates a gradient, which
dynamo does not trace) and the diffusion model's EDM loss with its backward, both with the
fused ops (impl="auto"). The fused ops are torch.library operators, so the compiled graph holds
them whole and compiles the PyTorch around them.

Reported per row (extra_info): images/s, mode (eager or compiled) and the one-off compile time.
Run: pytest benchmarks --benchmark-only -k compiled
"""

import time

import pytest
import torch
import torch.nn.functional as F

from bench_utils import DEVICES, sync
from genmix.models.diffusion import DiffusionUNet, EDMPrecond
from genmix.models.stylegan2 import Discriminator, Generator

BATCH = {"cpu": 16, "cuda": 64}
ROUNDS = {"cpu": 5, "cuda": 20}


def _gan(device):
    torch.manual_seed(0)
    G = Generator(64, 3, 128, 32, 1, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=64)).to(device)
    D = Discriminator(3, 32, 1, channel_base=1024, channel_max=64, mbstd_group_size=4).to(device)
    n = BATCH[device]
    z, c = torch.randn(n, 64, device=device), F.one_hot(torch.arange(n, device=device) % 3, 3).float()
    real = torch.rand(n, 1, 32, 32, device=device) * 2 - 1

    def loss():
        fake = G(z, c, noise_mode="const")
        return (F.softplus(-D(fake, c)).mean() + F.softplus(D(fake.detach(), c)).mean()
                + F.softplus(-D(real, c)).mean())

    return loss, list(G.parameters()) + list(D.parameters())


def _diffusion(device):
    torch.manual_seed(0)
    net = EDMPrecond(DiffusionUNet(32, 1, 2)).to(device)
    n = BATCH[device]
    x = torch.rand(n, 1, 32, 32, device=device) * 2 - 1
    y = F.one_hot(torch.arange(n, device=device) % 2, 2).float()
    sigma = (torch.randn(n, device=device) * 1.2 - 1.2).exp()
    noise = torch.randn_like(x)

    def loss():
        weight = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
        denoised = net(x + noise * sigma.reshape(-1, 1, 1, 1), sigma, y)
        return (weight.reshape(-1, 1, 1, 1) * (denoised - x).square()).mean()

    return loss, list(net.parameters())


STEPS = {"gan": _gan, "diffusion": _diffusion}


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_step(benchmark, device, step, mode):
    benchmark.group = f"compiled-{step}-{device}-batch{BATCH[device]}"
    loss, params = STEPS[step](device)
    if mode == "compiled":
        torch._dynamo.reset()
        loss = torch.compile(loss, fullgraph=True)

    def run():
        for p in params:
            p.grad = None
        loss().backward()
        sync(device)

    start = time.perf_counter()
    run()  # eager: warm-up; compiled: tracing and code generation
    first_call = time.perf_counter() - start
    benchmark.pedantic(run, rounds=ROUNDS[device], iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(mode=mode, baseline=mode == "eager", first_call_s=first_call,
                                images_per_s=BATCH[device] / benchmark.stats.stats.mean)
