"""Checkpoints: nested state round trip, atomic completeness, pruning and clear errors."""

import json

import pytest
import torch

from genmix.training.checkpoint import (CheckpointError, latest_checkpoint, list_checkpoints,
                                        load_checkpoint, save_checkpoint)


def _optimizer_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_nested_state(tmp_path):
    model, opt = _optimizer_state()
    state = {
        "model": model.state_dict(),
        "opt": opt.state_dict(),  # integer keys, lists of param groups, tensors and floats
        "rng": torch.get_rng_state(),
        "counters": {"nimg": 1234, "ratio": 0.5, "name": "x", "none": None, "pair": (1, 2)},
    }
    path = save_checkpoint(tmp_path, 1234, state)
    loaded = load_checkpoint(path)
    assert loaded["counters"] == state["counters"]
    assert isinstance(loaded["counters"]["pair"], tuple)
    for key, value in state["model"].items():
        assert torch.equal(loaded["model"][key], value)
    assert torch.equal(loaded["rng"], state["rng"])
    # The optimizer accepts its state back and continues identically.
    model2, opt2 = _optimizer_state()
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["opt"])
    assert set(opt2.state_dict()["state"]) == set(opt.state_dict()["state"])
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(opt2.state_dict()["state"][0][k], v)


def test_latest_and_prune(tmp_path):
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, {"x": torch.tensor([step])}, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt-000000030.json", "ckpt-000000040.json"]
    assert not (tmp_path / "ckpt-000000010.safetensors").exists()
    assert load_checkpoint(latest_checkpoint(tmp_path))["x"].item() == 40


def test_incomplete_checkpoint_is_ignored(tmp_path):
    save_checkpoint(tmp_path, 10, {"x": torch.ones(2)})
    # A crash after the weights but before the JSON: only the weights file exists.
    save_checkpoint(tmp_path, 20, {"x": torch.zeros(2)})
    (tmp_path / "ckpt-000000020.json").unlink()
    assert latest_checkpoint(tmp_path).name == "ckpt-000000010.json"
    # No temporary files are left behind by successful writes.
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert latest_checkpoint(tmp_path / "missing") is None


def test_unreadable_checkpoint_errors(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"x": torch.ones(2)})
    path.with_suffix(".safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
    path.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(path)
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint(tmp_path, 2, {"bad": object()})
    json.loads(path.read_text())  # the JSON itself stays valid
