"""Argument validation shared by the ops: a wrong argument fails early with a message that
names it, instead of surfacing as a shape error deep inside a kernel."""

from __future__ import annotations

from typing import Sequence, Union

import torch

CPU_DTYPES = (torch.float32, torch.float64)
GPU_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_float_tensor(op: str, name: str, t, ndim: Union[int, Sequence[int], None] = None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {t.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{op}: {name} must have {want} dimensions, got shape {tuple(t.shape)}")


def check_same_device(op: str, name: str, t: torch.Tensor, ref: torch.Tensor, ref_name: str = "x"):
    if t.device != ref.device:
        raise ValueError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}")


def as_int(op: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            return int(value)
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    return value


def int_tuple(op: str, name: str, value, lengths: Sequence[int]) -> tuple:
    """An int or a sequence of ints of one of `lengths`, as a tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) not in lengths:
            raise ValueError(f"{op}: {name} must be an int or a sequence of {lengths} ints, got {value!r}")
        return tuple(as_int(op, name, v) for v in value)
    return (as_int(op, name, value),)


def dtype_reason(t: torch.Tensor, supported: Sequence[torch.dtype]):
    if t.dtype not in supported:
        names = ", ".join(str(d).replace("torch.", "") for d in supported)
        return f"dtype {t.dtype} is not supported on {t.device.type} (supported: {names})"
    return None
