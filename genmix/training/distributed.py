"""torch.distributed plumbing shared by GAN and classifier training.

`torchrun --nproc_per_node=N -m genmix train-gan ...` starts one process per device; each
process calls `init_from_env()`, which joins the process group torchrun describes in the
environment (NCCL on GPUs, gloo on CPU). Without torchrun everything here degrades to a single
process and the helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from genmix.errors import UsageError

__all__ = ["DistInfo", "all_gather_objects", "all_reduce_grads", "all_reduce_mean", "broadcast_module",
           "init_from_env", "shutdown"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun; pick this process's device.

    `device` "cpu"/"cuda" forces the device type; by default a GPU is used when present.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise UsageError("device: CUDA was requested but torch sees no GPU")
    if want_cuda:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers to every process, so replicas start identical."""
    if not _active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (batch-norm running statistics) to every process.

    DDP syncs buffers at the start of each forward, so after the last training step every
    process holds statistics updated by its own batch; validating with rank 0's (the ones that
    are saved) keeps every process's early-stopping decision identical.
    """
    if not _active():
        return
    with torch.no_grad():
        for tensor in module.buffers():
            dist.broadcast(tensor.data, src=src)


def all_reduce_grads(module: torch.nn.Module) -> None:
    """Average gradients over processes in one flat all-reduce.

    The GAN step runs several backward passes (main loss, R1 with double backward, path length)
    that DistributedDataParallel's hooks do not support together, so gradients are averaged
    explicitly once per optimizer step, which keeps every replica's update identical.
    """
    if not _active():
        return
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of `values` over processes (a copy; the input is left alone)."""
    out = values.detach().clone()
    if _active():
        dist.all_reduce(out)
    return out


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over processes (a copy; the input is left alone)."""
    return all_reduce_sum(values) / (dist.get_world_size() if _active() else 1)


def all_gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every process (picklable objects; CPU tensors)."""
    if not _active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _active():
        dist.barrier()
