"""KnowledgeEditor: the editor contract on every tiny architecture (a checkpoint trained on
each), checkpoints refused on another base model or for another editor, training that resumes
after an interruption, params errors, and edits that take on the fact world."""

from __future__ import annotations

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_hyperlib.ke_testing import TINY_TRAINING, tiny_train_requests, train_tiny


class TestKEConformance(EditorConformance):
    editor_name = "ke"
    train_params = TINY_TRAINING


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


@pytest.fixture(scope="module")
def tiny_ckpt(pm, tmp_path_factory):
    return train_tiny("ke", "gpt2", tmp_path_factory.mktemp("ke") / "ckpt", pm)


def test_checkpoint_holds_the_network_and_a_manifest(tiny_ckpt):
    manifest = kme.read_trained_manifest(tiny_ckpt)
    assert manifest["editor"] == "ke"
    cfg = manifest["config"]
    assert cfg["target"]["kind"] == "weights"
    # every matrix of every block, nothing outside them (embeddings, head)
    names = cfg["target"]["names"]
    assert len(names) == 4 * 4 and all(n.startswith("transformer.h.") for n in names)
    assert cfg["recipe"]["objective"] == "lagrangian" and manifest["metrics"]["steps"] == TINY_TRAINING["steps"]
    assert "peak_rss_mb" in manifest["metrics"] and "seconds" in manifest["metrics"]


def test_edit_changes_block_weights_and_undo_restores(pm, tiny_ckpt):
    m = tiny_model("gpt2", pm)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    h = m.edit("ke", default_requests()[:1], {"checkpoint": tiny_ckpt, "max_repeats": 1})
    assert h.deltas and all(n.startswith("transformer.h.") for n in h.deltas)
    assert h.meta["ke"]["repeats"] == 1 and h.meta["ke"]["delta_norm"] > 0
    m.undo()
    assert all(torch.equal(before[k], v) for k, v in m.model.state_dict().items())


def test_checkpoint_refused_on_another_base_model(pm, tiny_ckpt):
    other = tiny_model("gpt2", pm, seed=1)  # same architecture, other weights
    with pytest.raises(kme.ConfigError, match="another base model"):
        other.edit("ke", default_requests()[:1], {"checkpoint": tiny_ckpt})
    ed = pm.editors.get("ke")({"checkpoint": tiny_ckpt})
    with pytest.raises(kme.ConfigError, match="another base model"):
        ed.check_model(other)
    assert other.stack == []


def test_checkpoint_of_another_editor_refused(pm, tiny_ckpt):
    with pytest.raises(kme.ConfigError, match="trained for editor 'ke', not 'slag'"):
        tiny_model("gpt2", pm).edit("slag", default_requests()[:1], {"checkpoint": tiny_ckpt})


def test_params_errors(pm, tmp_path):
    cls = pm.editors.get("ke")
    with pytest.raises(kme.ConfigError, match="max_repeats"):
        cls({"max_repeats": 0})
    with pytest.raises(kme.ConfigError, match="label_smoothing"):
        cls({"label_smoothing": 1.5})
    with pytest.raises(kme.ConfigError, match="optimizer"):
        cls({"optimizer": "sgd"})
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.ConfigError, match="needs a trained checkpoint"):
        m.edit("ke", default_requests()[:1])
    with pytest.raises(kme.ConfigError, match="not a trained checkpoint"):
        m.edit("ke", default_requests()[:1], {"checkpoint": str(tmp_path)})
    with pytest.raises(kme.ConfigError) as err:
        cls({"layers": [9]}).check_model(m)
    assert err.value.where == "layers[0]"
    assert m.stack == []


def test_training_resumes_after_an_interruption(pm, tmp_path):
    from kme_hyperlib.ke_recipe import train_hypernetwork

    model = tiny_model("gpt2", pm)
    ed = pm.editors.get("ke")({**TINY_TRAINING, "steps": 4})
    target, recipe = ed.make_target(model), ed.recipe()
    full = tmp_path / "full"
    train_hypernetwork(model, tiny_train_requests(), str(full), editor="ke", target=target, recipe=recipe)
    part = tmp_path / "part"
    assert train_hypernetwork(model, tiny_train_requests(), str(part), editor="ke", target=target, recipe=recipe,
                              stop_at=2) is None
    assert (part / "train-state.pt").exists() and not (part / "manifest.json").exists()
    assert kme.load_train_state(part)["step"] == 2
    # what the runner (or `kme train --resume`) calls next: train() picks the state up
    ed.train(model, tiny_train_requests(), str(part))
    assert not (part / "train-state.pt").exists()
    a = kme.load_trained(full, editor="ke", model=model).tensors
    b = kme.load_trained(part, editor="ke", model=model).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_state_of_another_configuration_is_refused(pm, tmp_path):
    model = tiny_model("gpt2", pm)
    ed = pm.editors.get("ke")({**TINY_TRAINING, "steps": 4})
    from kme_hyperlib.ke_recipe import train_hypernetwork

    train_hypernetwork(model, tiny_train_requests(), str(tmp_path), editor="ke", target=ed.make_target(model),
                       recipe=ed.recipe(), stop_at=2)
    other = pm.editors.get("ke")({**TINY_TRAINING, "steps": 4, "lr": 1e-3})
    with pytest.raises(kme.ConfigError, match="other settings"):
        other.train(model, tiny_train_requests(), str(tmp_path))


def test_train_points_the_params_at_the_checkpoint(pm, tmp_path):
    ed = pm.editors.get("ke")(TINY_TRAINING)
    assert type(ed).capabilities.needs_training and not ed.is_trained()
    updates = ed.train(tiny_model("gpt2", pm), tiny_train_requests(), str(tmp_path / "c"))
    assert updates == {"checkpoint": str(tmp_path / "c")}
    assert pm.editors.get("ke")(updates).is_trained()


@pytest.fixture(scope="module")
def factworld_ckpt(pm, tmp_path_factory):
    """A short training run on the fact world's train split (a few dozen steps)."""
    model = kme.load_model("factworld", pm)
    reqs = list(pm.datasets.get("factworld")({"limit": 200}).train_requests())
    out = tmp_path_factory.mktemp("ke-fw") / "ckpt"
    pm.editors.get("ke")({"steps": 30, "batch_size": 8, "eval_every": 0}).train(model, reqs, str(out))
    return model, str(out)


def test_edits_take_on_the_fact_world(pm, factworld_ckpt):
    model, ckpt = factworld_ckpt
    reqs = list(pm.datasets.get("factworld")({"limit": 8}).load())
    gains, top1 = [], 0
    for r in reqs:
        before = model.score([r.text], [r.target_new])[0].mean_logprob
        h = model.edit("ke", [r], {"checkpoint": ckpt})
        after = model.score([r.text], [r.target_new])[0]
        gains.append(after.mean_logprob - before)
        top1 += after.all_correct
        model.undo(h)
    assert sum(gains) / len(gains) > 2.0, gains  # the new object became far more likely
    assert top1 >= len(reqs) // 2, top1
