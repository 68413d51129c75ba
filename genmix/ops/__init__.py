"""Fused ops of genmix, each with pure-PyTorch (ref), C++ (cpp), CUDA and Triton implementations.

Every op takes `impl="auto"|"cuda"|"triton"|"cpp"|"ref"`; see `backends()` for what can run here.
"""

from genmix.ops._backend import IMPLS, BackendUnavailable
from genmix.ops._backend import report as _report
from genmix.ops.bias_act import ACTIVATIONS, bias_act
from genmix.ops.upfirdn2d import setup_filter, upfirdn2d

# Which implementations each op has, and the devices each serves.
OP_IMPLS = {
    "upfirdn2d": {"cuda": ("cuda",), "triton": ("cuda", "cpu"), "cpp": ("cpu",), "ref": ("cpu", "cuda")},
    "bias_act": {"cuda": ("cuda",), "triton": ("cuda", "cpu"), "cpp": ("cpu",), "ref": ("cpu", "cuda")},
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
    "setup_filter",
    "upfirdn2d",
]
