"""upfirdn2d throughput per implementation at StyleGAN2 shapes: up=2 and down=2 with the
[1,3,3,1] filter, forward and forward+backward. Run: pytest benchmarks --benchmark-only"""

import pytest
import torch

from bench_utils import DEVICES, impls_for, record, run_timed
from genmix.ops import setup_filter, upfirdn2d

# (batch, channels, resolution). CPU uses a smaller batch so a run stays in minutes on 2 cores.
SHAPES = {
    "cuda": [(32, 512, 8), (32, 512, 16), (32, 512, 32), (32, 128, 128), (32, 128, 256)],
    "cpu": [(4, 512, 8), (4, 512, 16), (4, 512, 32), (4, 128, 64), (4, 128, 128)],
}
RESAMPLE = {
    "up2": dict(up=2, padding=(2, 1, 2, 1), gain=4),
    "down2": dict(down=2, padding=(1, 1, 1, 1)),
}
CASES = [(dev, impl, shape, mode, pas)
         for dev in DEVICES for impl in impls_for(dev) for shape in SHAPES[dev]
         for mode in ("fwd", "fwdbwd") for pas in RESAMPLE]


@pytest.mark.parametrize("device, impl, shape, mode, resample", CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_upfirdn2d(benchmark, device, impl, shape, mode, resample):
    n, c, r = shape
    benchmark.group = f"upfirdn2d-{resample}-{mode}-{device}-{n}x{c}x{r}"
    kwargs = RESAMPLE[resample]
    x = torch.randn(n, c, r, r, device=device, requires_grad=(mode == "fwdbwd"))
    f = setup_filter([1, 3, 3, 1], device=device)
    y = upfirdn2d(x, f, **kwargs, impl="ref")
    dy = torch.randn_like(y)
    if mode == "fwd":
        fn = lambda: upfirdn2d(x, f, **kwargs, impl=impl)  # noqa: E731
        nbytes = (x.numel() + y.numel()) * 4
    else:
        fn = lambda: upfirdn2d(x, f, **kwargs, impl=impl).backward(dy)  # noqa: E731
        nbytes = 2 * (x.numel() + y.numel()) * 4
    run_timed(benchmark, device, fn, rounds=20 if device == "cuda" else 5)
    record(benchmark, device, impl, nbytes)
