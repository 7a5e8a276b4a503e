"""KGEditor (LM variant): the extra FFN layer is a rank-≤ex_size change of the output
projection of the chosen blocks, its factors travel in the handle's state (undo, patches,
sequential edits continue from them); the editor contract on every tiny architecture,
checkpoints refused on another base model, resumable training, params errors, edits on the
fact world."""

from __future__ import annotations

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_hyperlib.ke_recipe import train_hypernetwork
from kme_hyperlib.ke_testing import TINY_TRAINING, tiny_train_requests, train_tiny

TINY = {**TINY_TRAINING, "ex_size": 4}


class TestKGEditorConformance(EditorConformance):
    editor_name = "kgeditor"
    train_params = TINY


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


@pytest.fixture(scope="module")
def tiny_ckpt(pm, tmp_path_factory):
    return train_tiny("kgeditor", "gpt2", tmp_path_factory.mktemp("kge") / "ckpt", pm, ex_size=4)


def _edit(m, ckpt, i=0):
    return m.edit("kgeditor", default_requests()[i:i + 1], {"checkpoint": ckpt})


def test_the_extra_layer_is_a_low_rank_change_of_the_last_blocks_output_projection(pm, tiny_ckpt):
    m = tiny_model("gpt2", pm)
    h = _edit(m, tiny_ckpt)
    assert sorted(h.deltas) == ["transformer.h.2.mlp.c_proj.weight", "transformer.h.3.mlp.c_proj.weight"]
    for layer in (2, 3):
        w_in, w_out = h.state[f"extra.{layer}.in"], h.state[f"extra.{layer}.out"]
        assert w_in.shape == (4, 128) and w_out.shape == (32, 4)  # d_ff = 4 · 32, ex_size 4
        delta = h.deltas[f"transformer.h.{layer}.mlp.c_proj.weight"]
        assert torch.allclose(delta, (w_out @ w_in).T, atol=1e-6)  # Conv1D stores [d_ff, d_model]
        assert torch.linalg.matrix_rank(delta) <= 4


def test_the_folded_change_computes_what_an_explicit_extra_branch_computes(pm, tiny_ckpt):
    """The released layer: h_ex = W_out(W_in a) on the FFN's intermediate activation a,
    added to the FFN output. As a forward hook on the unedited model it gives the edited
    model's logits."""
    edited, plain = tiny_model("gpt2", pm), tiny_model("gpt2", pm)
    h = _edit(edited, tiny_ckpt)
    hooks = []
    for layer in (2, 3):
        w = h.state[f"extra.{layer}.out"] @ h.state[f"extra.{layer}.in"]
        mod = plain.layout.module(plain.model, layer, "mlp_out")
        hooks.append(mod.register_forward_hook(lambda mod, args, out, w=w: out + args[0] @ w.T))
    ids = torch.tensor([plain.tokenizer("Alice Smith was born in")["input_ids"]])
    try:
        with torch.no_grad():
            a, b = edited.model(ids).logits, plain.model(ids).logits
    finally:
        for hk in hooks:
            hk.remove()
    assert torch.allclose(a, b, atol=1e-5)


def test_sequential_edits_continue_from_the_layer_and_undo_goes_back(pm, tiny_ckpt):
    m = tiny_model("gpt2", pm)
    ed = m.make_editor("kgeditor", {"checkpoint": tiny_ckpt})
    target = ed.loaded(m).target
    init = target.current(m)
    assert float(init["extra.3.out"].abs().max()) == 0.0  # silent until an edit writes it
    h1 = m.edit(ed, default_requests()[:1])
    after1 = target.current(m)
    assert torch.equal(after1["extra.3.out"], h1.state["extra.3.out"])
    h2 = m.edit(ed, default_requests()[1:2])
    assert not torch.equal(target.current(m)["extra.3.out"], after1["extra.3.out"])
    w = m.parameter("transformer.h.3.mlp.c_proj.weight")
    m.undo(h2)
    assert torch.equal(target.current(m)["extra.3.out"], h1.state["extra.3.out"])
    m.undo(h1)
    assert torch.equal(target.current(m)["extra.3.in"], init["extra.3.in"])
    assert float(target.current(m)["extra.3.out"].abs().max()) == 0.0
    assert w is m.parameter("transformer.h.3.mlp.c_proj.weight")


def test_a_loaded_patch_brings_the_layer_back(pm, tiny_ckpt, tmp_path):
    a = tiny_model("gpt2", pm)
    _edit(a, tiny_ckpt, 0)
    a.save_patch(str(tmp_path / "p"))
    b = tiny_model("gpt2", pm)
    b.load_patch(str(tmp_path / "p"))
    # the next edit starts from the restored layer: same result on both models
    ha, hb = _edit(a, tiny_ckpt, 1), _edit(b, tiny_ckpt, 1)
    assert all(torch.equal(ha.state[k], hb.state[k]) for k in ha.state)
    assert all(torch.allclose(ha.deltas[k], hb.deltas[k], atol=1e-6) for k in ha.deltas)


def test_checkpoint_holds_the_layers_input_matrix(pm, tiny_ckpt):
    manifest = kme.read_trained_manifest(tiny_ckpt)
    assert manifest["editor"] == "kgeditor"
    assert manifest["config"]["target"] == {"kind": "extra_ffn", "layers": [2, 3], "ex_size": 4, "d_model": 32,
                                            "d_ff": 128}
    ck = kme.load_trained(tiny_ckpt, editor="kgeditor", model=tiny_model("gpt2", pm))
    assert ck.tensors["target.extra.2.in"].shape == (4, 128)


def test_checkpoint_refused_on_another_base_model(pm, tiny_ckpt):
    with pytest.raises(kme.ConfigError, match="another base model"):
        _edit(tiny_model("gpt2", pm, seed=1), tiny_ckpt)


def test_params_errors(pm):
    cls = pm.editors.get("kgeditor")
    for bad, field in (({"ex_size": 0}, "ex_size"), ({"layers": []}, "layers"), ({"max_repeats": 0}, "max_repeats"),
                       ({"edits_per_step": 0}, "edits_per_step"), ({"margin_kl": 0}, "margin_kl")):
        with pytest.raises(kme.ConfigError, match=field):
            cls(bad)
    with pytest.raises(kme.ConfigError) as err:
        cls({"layers": [7]}).check_model(tiny_model("gpt2", pm))
    assert err.value.where == "layers[0]"


def test_training_resumes_after_an_interruption(pm, tmp_path):
    model = tiny_model("gpt2", pm)
    ed = pm.editors.get("kgeditor")({**TINY, "steps": 4})
    args = dict(editor="kgeditor", target=ed.make_target(model), recipe=ed.recipe())
    train_hypernetwork(model, tiny_train_requests(), str(tmp_path / "full"), **args)
    assert train_hypernetwork(model, tiny_train_requests(), str(tmp_path / "part"), stop_at=2, **args) is None
    ed.train(model, tiny_train_requests(), str(tmp_path / "part"))
    a = kme.load_trained(tmp_path / "full", editor="kgeditor", model=model).tensors
    b = kme.load_trained(tmp_path / "part", editor="kgeditor", model=model).tensors
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def factworld_ckpt(pm, tmp_path_factory):
    model = kme.load_model("factworld", pm)
    reqs = list(pm.datasets.get("factworld")({"limit": 200}).train_requests())
    out = tmp_path_factory.mktemp("kge-fw") / "ckpt"
    pm.editors.get("kgeditor")({"steps": 30, "eval_every": 0}).train(model, reqs, str(out))
    return model, str(out)


def test_edits_take_on_the_fact_world(pm, factworld_ckpt):
    model, ckpt = factworld_ckpt
    reqs = list(pm.datasets.get("factworld")({"limit": 8}).load())
    gains = []
    for r in reqs:
        before = model.score([r.text], [r.target_new])[0].mean_logprob
        h = model.edit("kgeditor", [r], {"checkpoint": ckpt})
        gains.append(model.score([r.text], [r.target_new])[0].mean_logprob - before)
        model.undo(h)
    assert sum(gains) / len(gains) > 1.0, gains
