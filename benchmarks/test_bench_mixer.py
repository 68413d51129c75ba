"""mix_batch and sample_dirichlet against the usual Python recipes.

The recipe a training loop typically uses for GenMix/mixup: lambdas from numpy on the host,
copied to the device, then torch elementwise ops (several passes over the images). mix_batch
samples and mixes in one pass. Run: pytest benchmarks --benchmark-only -k mixer
"""

import numpy as np
import pytest
import torch

from bench_utils import DEVICES, impls_for, record, run_timed
from genmix.ops import mix_batch, sample_dirichlet

SHAPES = {"cuda": [(64, 3, 256, 256), (512, 3, 256, 256)], "cpu": [(64, 3, 256, 256)]}
RECIPE = "numpy+torch"
CASES = [(dev, impl, shape, dtype) for dev in DEVICES for impl in [RECIPE] + impls_for(dev)
         for shape in SHAPES[dev] for dtype in ("float32", "uint8")]


def _recipe(xa, ya, xb, yb, alpha):
    lam = torch.from_numpy(np.random.beta(alpha, 1.0, size=xa.shape[0])).float().to(xa.device)
    if xa.dtype == torch.uint8:
        xa, xb = xa.float() / 255, xb.float() / 255
    l4 = lam.view(-1, 1, 1, 1)
    return l4 * xa + (1 - l4) * xb, lam[:, None] * ya + (1 - lam[:, None]) * yb, lam


@pytest.mark.parametrize("device, impl, shape, dtype", CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_mixer_mix_batch(benchmark, device, impl, shape, dtype):
    benchmark.group = f"mixer-mix_batch-{dtype}-{device}-{'x'.join(map(str, shape))}"
    if dtype == "uint8":
        xa, xb = (torch.randint(0, 256, shape, dtype=torch.uint8, device=device) for _ in range(2))
    else:
        xa, xb = (torch.rand(shape, device=device) for _ in range(2))
    ya = torch.rand(shape[0], 10, device=device)
    yb = torch.rand(shape[0], 10, device=device)
    if impl == RECIPE:
        fn = lambda: _recipe(xa, ya, xb, yb, 0.3)  # noqa: E731
    else:
        fn = lambda: mix_batch(xa, ya, xb, yb, alpha=0.3, impl=impl)  # noqa: E731
    run_timed(benchmark, device, fn, rounds=20 if device == "cuda" else 5)
    # Minimum traffic: read both sources, write one float32 result.
    record(benchmark, device, impl, 2 * xa.numel() * xa.element_size() + xa.numel() * 4, baseline=impl == RECIPE)


@pytest.mark.parametrize("device, impl", [(d, i) for d in DEVICES for i in ["torch.distributions"] + impls_for(d)])
def test_mixer_sample_dirichlet(benchmark, device, impl):
    benchmark.group = f"mixer-sample_dirichlet-{device}-65536x10"
    conc = torch.full((65536, 10), 0.5, device=device)
    if impl == "torch.distributions":
        fn = lambda: torch.distributions.Dirichlet(conc).sample()  # noqa: E731
    else:
        fn = lambda: sample_dirichlet(conc, impl=impl)  # noqa: E731
    run_timed(benchmark, device, fn, rounds=20 if device == "cuda" else 5)
    record(benchmark, device, impl, conc.numel() * 8, baseline=impl == "torch.distributions")
