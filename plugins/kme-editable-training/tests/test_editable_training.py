"""Editable Training: meta-training (resume, second order through the inner steps), the
editor's installation of the meta-trained weights (undo restores the original base), errors,
the fact world, and the conformance kit on every tiny family."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests, default_train_requests
from kme.testing import tiny_model

from kme_editable_training.training import EditableTrainConfig, default_layers, sgd_edit, train_editable
from kme_hyperlib.batches import lm_batch

NAME = "editable-training"
ROOT = Path(tempfile.mkdtemp(prefix="kme-editable-test-"))
TINY = EditableTrainConfig(steps=3, edits_per_step=2, loc_per_edit=2, lr=1e-3, save_every=1)
_CKPTS: dict[str, Path] = {}


def tiny_checkpoint(family: str = "gpt2") -> Path:
    if family not in _CKPTS:
        out = ROOT / family
        train_editable(tiny_model(family, kme.build_plugin_manager()), default_train_requests(), str(out), TINY)
        _CKPTS[family] = out
    return _CKPTS[family]


def teardown_module() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)


class TestEditableTrainingConformance(EditorConformance):
    editor_name = NAME
    train_params = {"train": TINY.model_dump()}


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def _state(m):  # type: ignore[no-untyped-def]
    return {k: v.detach().clone() for k, v in m.model.state_dict().items()}


# -- training --------------------------------------------------------------------------------
def test_meta_training_writes_new_base_weights_and_step_sizes(pm):
    ck = tiny_checkpoint()
    m = tiny_model("gpt2", pm)
    loaded = kme.load_trained(ck, editor=NAME, model=m)
    base = {k[5:]: v for k, v in loaded.tensors.items() if k.startswith("base.")}
    assert len(base) == len(list(m.model.parameters()))  # every weight was meta-trained
    assert any(not torch.equal(v, m.parameter(k).detach()) for k, v in base.items())
    assert loaded.tensors["edit_lrs"].shape == (6,)  # MLP in/out of the last three blocks
    assert loaded.config["inner_steps"] == 1 and loaded.config["layers"] == default_layers(m) == [1, 2, 3]
    metrics = loaded.manifest["metrics"]
    assert metrics["steps"] == 3 and metrics["changed_weights"] == len(base) and metrics["peak_rss_mb"] > 0
    # training never touched the model it was given
    assert all(torch.equal(v, tiny_model("gpt2", pm).model.state_dict()[k]) for k, v in m.model.state_dict().items())


def test_inner_steps_are_differentiable_second_order(pm):
    m = tiny_model("gpt2", pm)
    w = {n: p.detach().clone().requires_grad_(True) for n, p in m.model.named_parameters()}
    names = ["transformer.h.3.mlp.c_proj.weight"]
    lrs = torch.tensor([0.1], requires_grad=True)
    b = lm_batch(m, [(r.text, r.target_new) for r in default_requests()])
    edited, taken, _ = sgd_edit(m.model, w, names, lrs, b, 2, create_graph=True)
    assert taken == 2
    edited[names[0]].sum().backward()
    assert lrs.grad is not None and w["transformer.h.0.mlp.c_fc.weight"].grad is not None


def test_interrupted_training_resumes_to_the_same_weights(pm, tmp_path):
    reqs = default_train_requests()
    cfg = TINY.model_copy(update={"steps": 4, "save_every": 100})
    full = train_editable(tiny_model("gpt2", pm), reqs, str(tmp_path / "full"), cfg)
    part = train_editable(tiny_model("gpt2", pm), reqs, str(tmp_path / "res"), cfg, stop_after=2)
    assert not part.finished and (tmp_path / "res" / "train-state.pt").exists()
    rest = train_editable(tiny_model("gpt2", pm), reqs, str(tmp_path / "res"), cfg)
    assert rest.finished and rest.resumed_from == 2 and rest.final_loss == full.final_loss
    a = kme.load_trained(tmp_path / "full", editor=NAME, model=tiny_model("gpt2", pm)).tensors
    b = kme.load_trained(tmp_path / "res", editor=NAME, model=tiny_model("gpt2", pm)).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the editor ----------------------------------------------------------------------------------
def test_first_edit_installs_the_meta_trained_base_and_undo_restores_the_original(pm):
    m = tiny_model("gpt2", pm)
    original = _state(m)
    ck = kme.load_trained(tiny_checkpoint(), editor=NAME, model=m)
    params = {"checkpoint": str(tiny_checkpoint())}
    h0 = m.edit(NAME, default_requests()[:1], {**params, "steps": 0})
    assert h0.meta[NAME]["installs_base"] and h0.meta[NAME]["steps_taken"] == 0
    for k, v in ck.tensors.items():
        if k.startswith("base."):
            assert torch.allclose(m.parameter(k[5:]).detach(), v, atol=1e-6)
    m.undo()
    assert all(torch.equal(original[k], v) for k, v in _state(m).items())
    # sequential: only the first edit installs; later edits start from the weights as they are
    h1 = m.edit(NAME, default_requests()[:1], params)
    h2 = m.edit(NAME, default_requests()[1:2], params)
    assert h1.meta[NAME]["installs_base"] and not h2.meta[NAME]["installs_base"]
    assert set(h2.deltas) <= set(ck.config["inner"])
    assert h1.meta[NAME]["steps_taken"] <= 10 and h1.meta[NAME]["edit_ms"] > 0
    m.undo()
    assert all(torch.equal(original[k], v) for k, v in _state(m).items())


class _Nudge(kme.Editor):
    """Adds 0.01 to one weight: another editor's change that installing must keep."""

    name = "nudge"
    weight = "transformer.h.0.mlp.c_fc.weight"

    def apply(self, model, requests, location=None):  # type: ignore[no-untyped-def]
        h = model.new_handle(self, requests)
        h.add_delta(self.weight, torch.full(tuple(model.parameter(self.weight).shape), 0.01))
        return h


def test_installing_keeps_other_editors_changes(pm):
    m = tiny_model("gpt2", pm)
    meta = kme.load_trained(tiny_checkpoint(), editor=NAME, model=m).tensors[f"base.{_Nudge.weight}"]
    m.edit(_Nudge(), default_requests()[:1])
    nudged = _state(m)
    m.edit(NAME, default_requests()[1:2], {"checkpoint": str(tiny_checkpoint()), "steps": 0})
    assert torch.allclose(m.parameter(_Nudge.weight).detach(), meta + 0.01, atol=1e-6)
    m.undo(m.stack[-1])
    assert all(torch.equal(nudged[k], v) for k, v in _state(m).items())


def test_checkpoint_of_another_base_is_refused(pm):
    other = tiny_model("gpt2", pm, seed=1)
    with pytest.raises(kme.ConfigError, match="another base model"):
        other.edit(NAME, default_requests()[:1], {"checkpoint": str(tiny_checkpoint())})
    assert other.stack == []


def test_errors_name_the_param(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.ConfigError, match="needs a meta-trained checkpoint") as e:
        m.edit(NAME, default_requests()[:1])
    assert "params.checkpoint" in str(e.value)
    with pytest.raises(kme.ConfigError, match="not a trained checkpoint"):
        m.make_editor(NAME, {"checkpoint": str(tmp_path)}).check_model(m)
    with pytest.raises(kme.ConfigError, match="differ from the checkpoint"):
        m.make_editor(NAME, {"checkpoint": str(tiny_checkpoint()), "layers": [0]}).check_model(m)
    for bad in ({"steps": -1}, {"lr_scale": 0}, {"train": {"inner_steps": 0}}, {"train": {"base_loss": "mse"}}):
        with pytest.raises(kme.ConfigError):
            m.make_editor(NAME, bad)
    with pytest.raises(kme.ConfigError, match="mend"):
        kme.load_trained(tiny_checkpoint(), editor="mend", model=m)


# -- the fact world ------------------------------------------------------------------------------
def test_edits_take_on_the_fact_world(pm, tmp_path):
    m = kme.load_model(kme.ModelSpec(name="factworld"), pm)
    ds = pm.datasets.get("factworld")({"limit": 10})
    out = tmp_path / "et"
    train_editable(m, list(ds.train_requests()), str(out),
                   EditableTrainConfig(steps=10, edits_per_step=2, loc_per_edit=2))
    ed = m.make_editor(NAME, {"checkpoint": str(out)})
    gained = 0
    evals = list(ds.load())
    for r in evals:
        before = m.score([r.text], [r.target_new])[0].logprob
        m.edit(ed, [r])
        gained += m.score([r.text], [r.target_new])[0].logprob > before + 1.0
        m.undo()
    assert gained >= 0.7 * len(evals)
