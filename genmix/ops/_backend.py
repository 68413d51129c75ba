"""One dispatcher for every fused op: which implementations exist, which can run here, and
which one `impl="auto"` picks.

Four implementations per op:
  ref     pure PyTorch, runs anywhere; the definition the others are tested against
  cpp     C++ kernels in the compiled extension `genmix._C` (CPU tensors)
  cuda    CUDA kernels in `genmix._C` (CUDA tensors; needs a CUDA build)
  triton  Triton kernels in `genmix.kernels` (CUDA tensors; CPU only under TRITON_INTERPRET=1)

`auto` tries the device's preference list in order and takes the first implementation that is
available and supports the call's arguments, falling back to `ref`. An explicit impl that
cannot run raises BackendUnavailable with the reason and the fix.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import torch

from genmix.ops import _library

IMPLS = ("cuda", "triton", "cpp", "ref")

# Fastest first. On GPU the hand-written CUDA kernels come before Triton; on CPU the Triton
# interpreter is a debugging aid, never a speed path, so auto never picks it there.
PREFERENCE = {
    "cuda": ("cuda", "triton", "ref"),
    "cpu": ("cpp", "ref"),
}

BUILD_HINT = (
    "build it from the source tree with `pip install --no-build-isolation -e .` "
    "(or `make install`)"
)


class BackendUnavailable(RuntimeError):
    """An explicitly requested implementation cannot run for this call."""


def extension():
    """The compiled module `genmix._C`, or None when it is not built (reason in extension_error)."""
    return _library.extension()


def extension_error() -> Optional[str]:
    return _library.extension_error()


def triton_interpreting() -> bool:
    return _INTERPRET


# Read once: Triton reads it once too, when it is first imported.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unavailable_reason(impl: str, device: torch.device) -> Optional[str]:
    """Why `impl` cannot run on `device` (None when it can), independent of op arguments."""
    if impl == "ref":
        return None
    if impl == "cpp":
        if device.type != "cpu":
            return f"the cpp backend runs on CPU tensors, not {device.type}; use impl='cuda' or 'auto'"
        if extension() is None:
            return f"the compiled extension genmix._C is not built ({extension_error()}); {BUILD_HINT}"
        return None
    if impl == "cuda":
        if device.type != "cuda":
            return f"the cuda backend runs on CUDA tensors, not {device.type}; use impl='cpp' or 'auto'"
        ext = extension()
        if ext is None:
            return f"the compiled extension genmix._C is not built ({extension_error()}); {BUILD_HINT}"
        if not ext.has_cuda():
            return (
                "genmix._C was built without CUDA kernels; rebuild on a machine with the CUDA "
                "toolkit (nvcc) and a CUDA-enabled torch: "
                "`GENMIX_CUDA=1 pip install --no-build-isolation -e .`"
            )
        return None
    if impl == "triton":
        err = _library.triton_error()
        if err:
            return err
        if device.type == "cuda":
            return None
        if device.type == "cpu" and triton_interpreting():
            return None
        return (
            f"the triton backend runs on CUDA tensors (on CPU only with TRITON_INTERPRET=1 set "
            f"before import), not {device.type}"
        )
    return f"unknown impl {impl!r}"


ArgCheck = Callable[[str], Optional[str]]


def select_impl(op: str, impl: str, device: torch.device, unsupported: ArgCheck) -> str:
    """Resolve `impl` for one call of `op`, and count what ran (see `usage`).

    `unsupported(name)` returns why backend `name` cannot handle this call's arguments
    (dtype, filter gradient, ...) or None.
    """
    if impl != "auto" and impl not in IMPLS:
        raise ValueError(f"{op}: impl must be 'auto' or one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        reasons = []
        for name in PREFERENCE.get(device.type, ()):
            if name == "ref":
                break
            why = unavailable_reason(name, device) or unsupported(name)
            if why is None:
                _count(op, name)
                return name
            reasons.append(f"{name}: {why}")
        _count(op, "ref", "; ".join(reasons) or None)
        return "ref"
    reason = unavailable_reason(impl, device) or unsupported(impl)
    if reason is not None:
        raise BackendUnavailable(f"{op}: impl={impl!r} cannot run here: {reason}")
    _count(op, impl)
    return impl


# What ran: calls per op and implementation, and why `auto` fell back to `ref`, so a log or a
# report can state the kernels a run really used rather than the ones that were built.
_calls: dict = {}
_fallbacks: dict = {}


def _count(op: str, impl: str, fallback_reason: Optional[str] = None) -> None:
    if torch.compiler.is_compiling():  # traced once, run many times: counting would mislead
        return
    key = (op, impl)
    _calls[key] = _calls.get(key, 0) + 1
    if fallback_reason is not None:
        key = (op, fallback_reason)
        _fallbacks[key] = _fallbacks.get(key, 0) + 1


def usage(reset: bool = False) -> dict:
    """{"calls": {op: {impl: n}}, "fallbacks": {op: {reason: n}}} since the last reset.

    "fallbacks" counts the calls for which `auto` ran `ref` although a faster implementation is
    preferred on that device, with the reasons each preferred one was passed over.
    """
    out = {"calls": {}, "fallbacks": {}}
    for (op, impl), n in sorted(_calls.items()):
        out["calls"].setdefault(op, {})[impl] = n
    for (op, reason), n in sorted(_fallbacks.items()):
        out["fallbacks"].setdefault(op, {})[reason] = n
    if reset:
        reset_usage()
    return out


def reset_usage() -> None:
    _calls.clear()
    _fallbacks.clear()


def report(op_checks: dict) -> dict:
    """Availability of every op and impl on CPU and (if present) CUDA, for `genmix info`.

    op_checks maps op name -> {impl: list of device types that impl serves}.
    """
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    out = {}
    for op, impls in op_checks.items():
        rows = {}
        for impl, device_types in impls.items():
            for dev in devices:
                if dev.type not in device_types:
                    continue
                reason = unavailable_reason(impl, dev)
                rows[f"{impl}@{dev.type}"] = {"available": reason is None, "reason": reason}
        out[op] = rows
    return out
