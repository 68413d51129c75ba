"""genmix's CUDA upfirdn2d and bias_act against NVlabs' own CUDA plugins at StyleGAN2's shapes,
outputs compared and both timed in one run, with the achieved GB/s beside the measured copy
bandwidth.

NVlabs' ops are loaded at run time from a checkout given on the command line, never copied
into genmix (their licence forbids it):

    pytest benchmarks/test_bench_vs_nvlabs.py --benchmark-only --nvlabs-root /path/to/stylegan3

Two things in NVlabs' loader no longer work with current torch and setuptools, and are bridged
here at run time: `torch.utils.cpp_extension.load` returns the built module without entering it
in sys.modules, which NVlabs' custom_ops then imports by name; and conv2d_gradfix imports
`pkg_resources`, which new setuptools no longer ships. Skipped without a GPU or a checkout.
"""

import importlib
import os
import sys
import types

import pytest
import torch

from bench_utils import record, sync
from genmix.ops import bias_act, setup_filter, upfirdn2d

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# StyleGAN2 at 256 px, batch 32: channels min(512, 16384 / res) per resolution.
RESOLUTIONS = [8, 16, 32, 64, 128, 256]
BATCH = 32


def _channels(res):
    return min(512, 16384 // res)


def _bridge_current_torch():
    """The two run-time fixes NVlabs' loader needs on current torch (see the module docstring)."""
    import torch.utils.cpp_extension as cpp_extension

    if not getattr(cpp_extension.load, "_genmix_bridged", False):
        original = cpp_extension.load

        def load(name, *args, **kwargs):
            module = original(name, *args, **kwargs)
            sys.modules.setdefault(name, module)
            return module

        load._genmix_bridged = True
        cpp_extension.load = load
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)


@pytest.fixture(scope="module")
def nvlabs(nvlabs_root):
    if not nvlabs_root:
        pytest.skip("no --nvlabs-root given")
    if not os.path.isdir(os.path.join(nvlabs_root, "torch_utils", "ops")):
        pytest.fail(f"--nvlabs-root {nvlabs_root} has no torch_utils/ops")
    _bridge_current_torch()
    sys.path.insert(0, nvlabs_root)
    try:
        ops = types.SimpleNamespace(upfirdn2d=importlib.import_module("torch_utils.ops.upfirdn2d"),
                                    bias_act=importlib.import_module("torch_utils.ops.bias_act"))
        # Build both plugins now, outside any timing; NVlabs' ops fall back to their reference
        # silently when a plugin fails, so a failed build must stop the comparison.
        if not (ops.upfirdn2d._init() and ops.bias_act._init()):
            pytest.fail("NVlabs' CUDA plugins did not build")
    finally:
        sys.path.remove(nvlabs_root)
    return ops


def _time(benchmark, fn):
    fn()
    sync("cuda")

    def call():
        fn()
        sync("cuda")

    benchmark.pedantic(call, rounds=30, iterations=3, warmup_rounds=2)


UPFIRDN_CASES = {"up2": dict(up=2, padding=[2, 1, 2, 1], gain=4), "down2": dict(down=2, padding=[1, 1, 1, 1]),
                 "filter": dict(padding=[1, 2, 1, 2])}


@pytest.mark.parametrize("who", ["nvlabs", "genmix"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", list(UPFIRDN_CASES))
@pytest.mark.parametrize("res", RESOLUTIONS)
def test_upfirdn2d_vs_nvlabs(benchmark, nvlabs, res, case, dtype, who):
    kw = UPFIRDN_CASES[case]
    if case == "down2" and res < 8:
        pytest.skip("too small")
    x = torch.randn(BATCH, _channels(res), res, res, device="cuda", dtype=dtype)
    f = setup_filter([1, 3, 3, 1], device="cuda")
    ours = upfirdn2d(x, f, impl="cuda", **kw)
    theirs = nvlabs.upfirdn2d.upfirdn2d(x, f, impl="cuda", **kw)
    torch.testing.assert_close(ours, theirs, rtol=1e-3 if dtype == torch.float16 else 1e-6, atol=1e-3)
    benchmark.group = f"vs-nvlabs-upfirdn2d-{case}-{res}px-{str(dtype)[6:]}"
    if who == "genmix":
        _time(benchmark, lambda: upfirdn2d(x, f, impl="cuda", **kw))
    else:
        _time(benchmark, lambda: nvlabs.upfirdn2d.upfirdn2d(x, f, impl="cuda", **kw))
    record(benchmark, "cuda", who, x.numel() * x.element_size() + ours.numel() * ours.element_size(),
           baseline=who == "nvlabs")


@pytest.mark.parametrize("who", ["nvlabs", "genmix"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("res", [32, 128, 256])
def test_bias_act_vs_nvlabs(benchmark, nvlabs, res, dtype, who):
    x = torch.randn(BATCH, _channels(res), res, res, device="cuda", dtype=dtype)
    b = torch.randn(x.shape[1], device="cuda", dtype=dtype)
    ours = bias_act(x, b, act="lrelu", clamp=256, impl="cuda")
    theirs = nvlabs.bias_act.bias_act(x, b, act="lrelu", clamp=256, impl="cuda")
    torch.testing.assert_close(ours, theirs, rtol=1e-3 if dtype == torch.float16 else 1e-6, atol=1e-3)
    benchmark.group = f"vs-nvlabs-bias_act-{res}px-{str(dtype)[6:]}"
    fn = ((lambda: bias_act(x, b, act="lrelu", clamp=256, impl="cuda")) if who == "genmix"
          else (lambda: nvlabs.bias_act.bias_act(x, b, act="lrelu", clamp=256, impl="cuda")))
    _time(benchmark, fn)
    record(benchmark, "cuda", who, 2 * x.numel() * x.element_size(), baseline=who == "nvlabs")
