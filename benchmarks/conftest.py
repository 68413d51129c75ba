"""Benchmarks run their Triton kernels only on a GPU; seed every case the same way."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
