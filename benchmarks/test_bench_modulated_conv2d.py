"""modulated_conv2d forward+backward at StyleGAN2 shapes: the fused weight kernels against the
reference (modulation and demodulation as separate torch ops); the grouped convolution is the
same library call in both. Run: pytest benchmarks --benchmark-only -k modulated"""

import pytest
import torch

from bench_utils import DEVICES, impls_for, record, run_timed
from genmix.ops import modulated_conv2d, setup_filter

# (batch, in channels, out channels, resolution, up). CPU uses a smaller batch.
SHAPES = {
    "cuda": [(32, 512, 512, 4, 1), (32, 512, 512, 8, 2), (32, 512, 512, 16, 2), (32, 512, 512, 32, 2),
             (32, 256, 256, 64, 1), (32, 256, 128, 64, 2), (32, 128, 128, 128, 1)],
    "cpu": [(4, 512, 512, 4, 1), (4, 512, 512, 8, 2), (4, 512, 512, 16, 1), (4, 128, 128, 64, 1)],
}
CASES = [(dev, impl, shape) for dev in DEVICES for impl in impls_for(dev) for shape in SHAPES[dev]]


@pytest.mark.parametrize("device, impl, shape", CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_modulated_conv2d(benchmark, device, impl, shape):
    n, cin, cout, res, up = shape
    benchmark.group = f"modulated_conv2d-fwdbwd-{device}-{n}x{cin}to{cout}x{res}-up{up}"
    x = torch.randn(n, cin, res, res, device=device, requires_grad=True)
    weight = torch.randn(cout, cin, 3, 3, device=device, requires_grad=True)
    styles = torch.randn(n, cin, device=device, requires_grad=True)
    f = setup_filter([1, 3, 3, 1], device=device)

    def step():
        y = modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f,
                             flip_weight=(up == 1), impl=impl)
        y.backward(torch.ones_like(y))

    run_timed(benchmark, device, step, rounds=10 if device == "cuda" else 8)
    # Weight traffic of the modulation (the part the fused kernel owns): write + read N*O*I*K.
    record(benchmark, device, impl, 2 * n * cout * cin * 9 * 4)
