"""Checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint is any nested structure of dicts/lists holding tensors and plain values (model and
optimizer state dicts, RNG states, counters). Tensors are stored flat in one safetensors file
under their path in the structure ("G_ema/mapping.w_avg", "opt_G/state/3/exp_avg"); the JSON
keeps the structure with `{"__tensor__": key}` markers in their place. The JSON is written
last, so a checkpoint counts as complete only once both files exist: a run killed mid-write
leaves the previous checkpoint as the newest complete one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genmix._atomic import atomic_path, write_text

__all__ = ["CheckpointError", "latest_checkpoint", "list_checkpoints", "load_checkpoint",
           "prune_checkpoints", "save_checkpoint"]

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_NAME = re.compile(r"^ckpt-(\d{9,})\.json$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or unreadable."""


def _flatten(obj, prefix: str, tensors: dict):
    if isinstance(obj, torch.Tensor):
        key = prefix or "_root"
        # safetensors refuses shared or non-contiguous storage; a copy is cheap at save time.
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint keys must be str or int, got {type(k).__name__} at {prefix!r}")
            # Integer keys (optimizer state indices) are marked so they come back as ints.
            name = f"#{k}" if isinstance(k, int) else k
            out[name] = _flatten(v, f"{prefix}/{name}" if prefix else name, tensors)
        return out
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
        return {_TUPLE: items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _unflatten(obj, tensors: dict):
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _TUPLE in obj:
            return tuple(_unflatten(v, tensors) for v in obj[_TUPLE])
        return {(int(k[1:]) if k.startswith("#") else k): _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(directory, step: int, state: dict, *, keep: int | None = 3) -> Path:
    """Write `state` as ckpt-<step>.{safetensors,json} in `directory`; return the JSON path.

    `step` orders checkpoints (the training loop uses images seen). Older checkpoints beyond
    the newest `keep` are removed after the new one is complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict = {}
    structure = _flatten(state, "", tensors)
    stem = f"ckpt-{int(step):09d}"
    with atomic_path(directory / f"{stem}.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_text(directory / f"{stem}.json", json.dumps({"step": int(step), "state": structure}, indent=1))
    if keep is not None:
        prune_checkpoints(directory, keep)
    return directory / f"{stem}.json"


def list_checkpoints(directory) -> list[Path]:
    """Complete checkpoints in `directory`, oldest first (JSON paths)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.with_suffix(".safetensors").is_file():
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory, keep: int) -> None:
    for path in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
        path.with_suffix(".safetensors").unlink(missing_ok=True)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (give its .json or .safetensors path)."""
    path = Path(path)
    json_path = path.with_suffix(".json")
    weights_path = path.with_suffix(".safetensors")
    try:
        meta = json.loads(json_path.read_text())
        tensors = load_file(str(weights_path), device=str(map_location))
        return _unflatten(meta["state"], tensors)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {json_path} is incomplete: {exc.filename} is missing") from None
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read checkpoint {json_path}: {exc}") from None
