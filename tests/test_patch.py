"""Patches: round trip, refusal on another base model, save_pretrained."""

from __future__ import annotations

import json

import pytest
import torch
import toyplugins

from kme.errors import KmeError, PatchMismatchError
from kme.models.loading import load_model
from kme.testing import tiny_model


def _state(m):
    return {k: v.detach().clone() for k, v in m.model.state_dict().items()}


def test_patch_round_trip_reapplies_bit_for_bit(pm, tmp_path):
    reqs = toyplugins.ToyDataset().load()
    a = tiny_model("qwen2", pm)
    a.edit("toy_shift", reqs[:2], {"layer": 1})
    a.edit("toy_memory", reqs[2:3])
    a.edit("toy_shift", reqs[3:4], {"layer": 3, "scale": 0.2})
    a.save_patch(str(tmp_path / "p"))
    files = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert files == ["deltas.safetensors", "manifest.json"]  # no pickle anywhere
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert [e["editor"] for e in manifest["edits"]] == ["toy_shift", "toy_memory", "toy_shift"]
    assert manifest["edits"][1]["memory"][0]["subject"] == reqs[2].subject
    assert "kme-core" in manifest["versions"]

    b = tiny_model("qwen2", pm)
    handles = b.load_patch(str(tmp_path / "p"))
    assert len(handles) == 3
    sa, sb = _state(a), _state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.memory_contexts([reqs[2].text]) == a.memory_contexts([reqs[2].text])
    assert handles[0].requests[0] == reqs[0]
    b.undo()
    fresh = _state(tiny_model("qwen2", pm))
    assert all(torch.equal(fresh[k], v) for k, v in _state(b).items())


def test_patch_is_refused_on_a_different_base_model(pm, tmp_path):
    reqs = toyplugins.ToyDataset().load()
    a = tiny_model("gpt2", pm, seed=0)
    a.edit("toy_shift", reqs[:1])
    a.save_patch(str(tmp_path / "p"))
    other = tiny_model("gpt2", pm, seed=1)
    with pytest.raises(PatchMismatchError, match="was made for base model 'tiny-gpt2'"):
        other.load_patch(str(tmp_path / "p"))
    assert other.stack == []
    with pytest.raises(KmeError, match="not a kme patch"):
        other.load_patch(str(tmp_path))


def test_save_pretrained_of_edited_model_reloads(pm, tmp_path, model_dir):
    reqs = toyplugins.ToyDataset().load()
    m = load_model(model_dir, pm)
    m.edit("toy_shift", reqs[:1])
    m.save_pretrained(str(tmp_path / "edited"))
    again = load_model(str(tmp_path / "edited"), pm)
    sa, sb = _state(m), _state(again)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert again.base_fingerprint != m.base_fingerprint  # the edited model is a different base
