"""Benchmarks run their Triton kernels only on a GPU; seed every case the same way."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_addoption(parser):
    parser.addoption("--nvlabs-root", default=None,
                     help="a checkout of NVlabs' stylegan3 or stylegan2-ada-pytorch (the folder holding "
                          "torch_utils/): its CUDA ops are loaded from there and timed beside genmix's "
                          "(benchmarks/test_bench_vs_nvlabs.py; never copied into genmix)")


@pytest.fixture(scope="session")
def nvlabs_root(request):
    return request.config.getoption("--nvlabs-root")
