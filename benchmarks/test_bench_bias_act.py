"""bias_act throughput per implementation: StyleGAN2's lrelu, gain sqrt(2), clamp 256, with a
per-channel bias; forward and forward+backward. Run: pytest benchmarks --benchmark-only"""

import math

import pytest
import torch

from bench_utils import DEVICES, impls_for, record, run_timed
from genmix.ops import bias_act

SHAPES = {
    "cuda": [(32, 512, 32, 32), (32, 128, 128, 128), (32, 128, 256, 256)],
    "cpu": [(8, 512, 32, 32), (4, 128, 128, 128)],
}
CASES = [(dev, impl, shape, mode) for dev in DEVICES for impl in impls_for(dev)
         for shape in SHAPES[dev] for mode in ("fwd", "fwdbwd")]


@pytest.mark.parametrize("device, impl, shape, mode", CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_bias_act(benchmark, device, impl, shape, mode):
    benchmark.group = f"bias_act-lrelu-{mode}-{device}-{'x'.join(map(str, shape))}"
    x = torch.randn(shape, device=device, requires_grad=(mode == "fwdbwd"))
    b = torch.randn(shape[1], device=device, requires_grad=(mode == "fwdbwd"))
    dy = torch.randn(shape, device=device)
    kw = dict(act="lrelu", gain=math.sqrt(2), clamp=256, impl=impl)
    if mode == "fwd":
        fn = lambda: bias_act(x, b, **kw)  # noqa: E731
        nbytes = 2 * x.numel() * 4  # read x, write y
    else:
        fn = lambda: bias_act(x, b, **kw).backward(dy)  # noqa: E731
        nbytes = 5 * x.numel() * 4  # forward 2 + backward: read x, read dy, write dx
    run_timed(benchmark, device, fn, rounds=30 if device == "cuda" else 8)
    record(benchmark, device, impl, nbytes)
