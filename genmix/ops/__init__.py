"""Fused ops of genmix, each with pure-PyTorch (ref), C++ (cpp), CUDA and Triton implementations.

Every op takes `impl="auto"|"cuda"|"triton"|"cpp"|"ref"`; see `backends()` for what can run here.
The compiled and Triton kernels are torch.library operators (`torch.ops.genmix.*`, registered by
`genmix.ops._library`), so torch.compile, fake tensors and torch.library.opcheck work with them.
"""

from genmix.ops._backend import IMPLS, BackendUnavailable
from genmix.ops._backend import report as _report
from genmix.ops._backend import reset_usage, usage
from genmix.ops.bias_act import ACTIVATIONS, bias_act, fully_connected
from genmix.ops.grid_sample import grid_sample
from genmix.ops.mixing import gemix_labels, mix_batch, sample_beta, sample_dirichlet
from genmix.ops.modulated_conv2d import modulated_conv2d
from genmix.ops.upfirdn2d import setup_filter, upfirdn2d

# Which implementations each op has, and the devices each serves.
OP_IMPLS = {
    "upfirdn2d": {"cuda": ("cuda",), "triton": ("cuda", "cpu"), "cpp": ("cpu",), "ref": ("cpu", "cuda")},
    "bias_act": {"cuda": ("cuda",), "triton": ("cuda", "cpu"), "cpp": ("cpu",), "ref": ("cpu", "cuda")},
    "sample_dirichlet": {"cuda": ("cuda",), "triton": ("cuda", "cpu"), "cpp": ("cpu",), "ref": ("cpu", "cuda")},
    "modulated_conv2d": {"cuda": ("cuda",), "triton": ("cuda", "cpu"), "cpp": ("cpu",), "ref": ("cpu", "cuda")},
    "mix_batch": {"cuda": ("cuda",), "triton": ("cuda", "cpu"), "cpp": ("cpu",), "ref": ("cpu", "cuda")},
}


def backends() -> dict:
    """{op: {"impl@device": {"available": bool, "reason": str | None}}} for this machine."""
    return _report(OP_IMPLS)


__all__ = [
    "ACTIVATIONS",
    "BackendUnavailable",
    "IMPLS",
    "backends",
    "bias_act",
    "fully_connected",
    "gemix_labels",
    "grid_sample",
    "mix_batch",
    "modulated_conv2d",
    "reset_usage",
    "sample_beta",
    "sample_dirichlet",
    "setup_filter",
    "upfirdn2d",
    "usage",
]
