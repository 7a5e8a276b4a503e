"""SLAG: the editor contract on every tiny architecture, the objective's extra terms
(paraphrases, entailed questions, neutral facts) and the learned-optimizer loop, resumable
training, checkpoints refused on another base model, params errors, edits on the fact world."""

from __future__ import annotations

import random

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_hyperlib.ke_data import encode_item
from kme_hyperlib.ke_net import KEHyperNetwork
from kme_hyperlib.ke_recipe import _Trainer, train_hypernetwork
from kme_hyperlib.ke_testing import TINY_TRAINING, tiny_train_requests, train_tiny


TINY = {**TINY_TRAINING, "learned_opt_steps": 2}


class TestSLAGConformance(EditorConformance):
    editor_name = "slag"
    train_params = TINY

    def train_requests(self) -> list[kme.EditRequest]:
        return tiny_train_requests()  # with entailed questions too


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


@pytest.fixture(scope="module")
def tiny_ckpt(pm, tmp_path_factory):
    return train_tiny("slag", "gpt2", tmp_path_factory.mktemp("slag") / "ckpt", pm, learned_opt_steps=2)


def test_recipe_is_kes_with_slags_objective(pm):
    r = pm.editors.get("slag")().recipe()
    assert r.objective == "weighted" and r.paraphrases and r.entailed and r.neutral
    assert r.update_steps == 5 and r.optimizer == "adamw" and r.grad_clip == 1.0 and r.label_smoothing == 0.0
    r = pm.editors.get("slag")({"learned_opt_steps": 2, "entailed": False, "sequence": 3}).recipe()
    assert r.update_steps == 2 and not r.entailed and r.sequence == 3


def _trainer(pm, **params):
    model = tiny_model("gpt2", pm)
    ed = pm.editors.get("slag")({**TINY_TRAINING, **params})
    target = ed.make_target(model)
    items = [encode_item(model, r) for r in tiny_train_requests()]
    net = KEHyperNetwork(target.shapes(), model.model.get_input_embeddings().weight.detach(), hidden_dim=8,
                         condition_dim=16)
    return _Trainer(model, target, ed.recipe(), items, [], net)


def test_each_term_of_the_objective_is_computed(pm):
    stats = _trainer(pm, learned_opt_steps=1).step(random.Random(0))
    # the edit, other facts (KL), paraphrases, entailed questions, neutral facts (KL)
    assert {"main", "kl", "paraphrase", "neutral"} <= set(stats)
    trainer = _trainer(pm, learned_opt_steps=1)
    seen = set()
    rng = random.Random(0)
    for _ in range(6):  # birthplace requests carry an entailed question, the others none
        seen |= set(trainer.step(rng))
    assert "entailed" in seen
    off = _trainer(pm, learned_opt_steps=1, paraphrases=False, entailed=False, neutral=False)
    assert not {"paraphrase", "entailed", "neutral"} & set(off.step(random.Random(0)))


def test_the_learned_optimizer_loop_and_sequential_training(pm):
    t = _trainer(pm, learned_opt_steps=3, max_scale=1e-6)  # tiny changes: never top-1, all steps run
    assert t.step(random.Random(0))["update_steps_used"] == 3.0
    t = _trainer(pm, learned_opt_steps=1, sequence=2)
    rng = random.Random(0)
    t.step(rng)
    assert t.running is not None and t.in_sequence == 1  # the first update is kept for the next edit
    t.step(rng)
    assert t.running is None and t.in_sequence == 0  # reset after r = 2 edits


def test_edit_runs_the_update_steps(pm, tiny_ckpt):
    m = tiny_model("gpt2", pm)
    h = m.edit("slag", default_requests()[:1], {"checkpoint": tiny_ckpt, "update_steps": 3})
    meta = h.meta["slag"]
    assert 1 <= meta["update_steps"] <= 3 and "top1_on_edit_prompts" in meta
    m.undo()
    h = m.edit("slag", default_requests()[:1], {"checkpoint": tiny_ckpt, "update_steps": 1})
    assert h.meta["slag"]["update_steps"] == 1


def test_checkpoint_refused_on_another_base_model_and_for_another_editor(pm, tiny_ckpt):
    with pytest.raises(kme.ConfigError, match="another base model"):
        tiny_model("gpt2", pm, seed=1).edit("slag", default_requests()[:1], {"checkpoint": tiny_ckpt})
    with pytest.raises(kme.ConfigError, match="trained for editor 'slag', not 'ke'"):
        tiny_model("gpt2", pm).edit("ke", default_requests()[:1], {"checkpoint": tiny_ckpt})


def test_params_errors(pm):
    cls = pm.editors.get("slag")
    for bad, field in (({"update_steps": 0}, "update_steps"), ({"neutral_sources": ["nearby"]}, "neutral_sources"),
                       ({"neutral_sources": []}, "neutral_sources"), ({"lambda_kl": -1}, "lambda_kl"),
                       ({"objective": "lagrangian"}, "objective")):
        with pytest.raises(kme.ConfigError, match=field):
            cls(bad)
    with pytest.raises(kme.ConfigError, match="needs a trained checkpoint"):
        tiny_model("gpt2", pm).edit("slag", default_requests()[:1])


def test_training_resumes_after_an_interruption(pm, tmp_path):
    model = tiny_model("gpt2", pm)
    ed = pm.editors.get("slag")({**TINY, "steps": 4, "sequence": 2})
    args = dict(editor="slag", target=ed.make_target(model), recipe=ed.recipe())
    train_hypernetwork(model, tiny_train_requests(), str(tmp_path / "full"), **args)
    assert train_hypernetwork(model, tiny_train_requests(), str(tmp_path / "part"), stop_at=3, **args) is None
    ed.train(model, tiny_train_requests(), str(tmp_path / "part"))
    a = kme.load_trained(tmp_path / "full", editor="slag", model=model).tensors
    b = kme.load_trained(tmp_path / "part", editor="slag", model=model).tensors
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def factworld_ckpt(pm, tmp_path_factory):
    model = kme.load_model("factworld", pm)
    reqs = list(pm.datasets.get("factworld")({"limit": 200}).train_requests())
    out = tmp_path_factory.mktemp("slag-fw") / "ckpt"
    pm.editors.get("slag")({"steps": 25, "batch_size": 8, "learned_opt_steps": 2, "max_neutral": 2,
                            "eval_every": 0}).train(model, reqs, str(out))
    return model, str(out)


def test_edits_take_on_the_fact_world(pm, factworld_ckpt):
    model, ckpt = factworld_ckpt
    reqs = list(pm.datasets.get("factworld")({"limit": 8}).load())
    gains, top1 = [], 0
    for r in reqs:
        before = model.score([r.text], [r.target_new])[0].mean_logprob
        h = model.edit("slag", [r], {"checkpoint": ckpt})
        after = model.score([r.text], [r.target_new])[0]
        gains.append(after.mean_logprob - before)
        top1 += after.all_correct
        model.undo(h)
    assert sum(gains) / len(gains) > 2.0, gains
    assert top1 >= len(reqs) // 2, top1
