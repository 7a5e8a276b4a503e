"""PPA meets the editor contract on every tiny architecture; on the fact world its plug-in makes
the edit take while the gate keeps out-of-scope prompts on the original model (their outputs
bit for bit unchanged); plug-ins accumulate and undo one by one; patches rebuild them; the
hooks reproduce peft's LoRA forward and training leaves the model as it was."""

from __future__ import annotations

import pytest
import torch

import kme
from kme import ConfigError, KmeError
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_ppa.editor import PluginRouter
from kme_ppa.lora import ADAPTER_NAME, Adapter, LoraSettings, train_adapter


class TestPpaConformance(EditorConformance):
    editor_name = "ppa"
    params = {"epochs": 60, "lr": 5e-3}
    expects_top1 = True


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


@pytest.fixture(scope="module")
def world(pm):
    model = kme.load("factworld")
    requests = list(pm.datasets.get("factworld")({"limit": 6}).load())
    return model, requests


def _greedy(m, prompts):
    return m.generate(prompts, max_new_tokens=3)


def _each(m, prompts):
    """Next-token log-probabilities of each prompt alone (a batch's padded width can change
    the last bits, so bitwise comparisons use one prompt per call)."""
    return [m.next_token_logprobs([p])[0] for p in prompts]


def test_edit_takes_and_gate_keeps_neighbours_on_the_original_model(world):
    m, reqs = world
    batch = reqs[:3]
    neigh = [n.prompt for r in batch for n in r.neighborhood]
    before = _each(m, neigh)
    greedy_before = _greedy(m, neigh)
    h = m.edit("ppa", batch)
    try:
        scores = m.score([r.text for r in batch], [r.target_new for r in batch])
        assert all(s.all_correct for s in scores)
        para = [(p, r.target_new) for r in batch for p in r.paraphrase_prompts]
        gen = m.score([p for p, _ in para], [t for _, t in para])
        assert sum(s.all_correct for s in gen) >= len(gen) - 1
        _, routers = m.memory_lookup(neigh)
        outside = [i for i, r in enumerate(routers) if r is None]
        assert len(outside) >= len(neigh) - 1, "the gate admitted neighbourhood prompts"
        after = _each(m, neigh)
        for i in outside:  # not admitted: the original model, bit for bit
            assert torch.equal(after[i], before[i])
        agree = sum(a == b for a, b in zip(_greedy(m, neigh), greedy_before)) / len(neigh)
        assert agree >= 0.9
        assert h.meta["ppa"]["top1"] and h.state["keys"].shape[0] == len(batch)
    finally:
        m.undo()


def test_undo_restores_exactly_on_the_fact_world(world):
    m, reqs = world
    prompts = [reqs[0].text] + reqs[0].paraphrase_prompts + [n.prompt for n in reqs[0].neighborhood]
    state = {k: v.clone() for k, v in m.model.state_dict().items()}
    before = m.next_token_logprobs(prompts)
    m.edit("ppa", reqs[:1])
    assert not torch.equal(m.next_token_logprobs(prompts[:1]), before[:1])
    m.undo()
    assert all(torch.equal(state[k], v) for k, v in m.model.state_dict().items())
    assert torch.equal(m.next_token_logprobs(prompts), before)


def test_sequential_plugins_route_each_edit_to_its_own(world):
    m, reqs = world
    a, b = reqs[0], reqs[1]
    base = _each(m, [a.text, b.text])
    ha = m.edit("ppa", [a])
    hb = m.edit("ppa", [b])
    try:
        _, routers = m.memory_lookup([a.text, b.text])
        assert isinstance(routers[0], PluginRouter) and isinstance(routers[1], PluginRouter)
        assert routers[0] is not routers[1]
        assert all(s.all_correct for s in m.score([a.text, b.text], [a.target_new, b.target_new]))
        m.undo(ha)  # the earlier plug-in goes; the later one stays
        assert torch.equal(_each(m, [a.text])[0], base[0])
        assert m.score([b.text], [b.target_new])[0].all_correct
        assert m.stack == [hb]
    finally:
        m.undo()


def test_patch_round_trip_on_the_fact_world(world, pm, tmp_path):
    m, reqs = world
    prompts = [reqs[2].text] + reqs[2].paraphrase_prompts + [n.prompt for n in reqs[2].neighborhood]
    m.edit("ppa", reqs[2:3])
    try:
        edited = m.next_token_logprobs(prompts)
        m.save_patch(str(tmp_path / "patch"))
    finally:
        m.undo()
    other = kme.load("factworld")
    other.load_patch(str(tmp_path / "patch"))
    assert torch.equal(other.next_token_logprobs(prompts), edited)
    assert other.stack[0].meta["ppa"]["modules"]


def test_patch_with_wrong_shapes_is_refused(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    m.edit("ppa", default_requests()[:1], {"epochs": 2})
    m.save_patch(str(tmp_path / "p"))
    other = tiny_model("llama", pm)
    with pytest.raises(KmeError):
        other.load_patch(str(tmp_path / "p"))
    h = m.stack[0]
    h.state["keys"] = h.state["keys"][:, :3]
    with pytest.raises(KmeError, match="gate keys"):
        h.editor.restore(m, h)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_hooks_reproduce_peft_forward(pm, family):
    from peft import LoraConfig, LoraModel

    m = tiny_model(family, pm)
    names = [m.layout.name(0, "mlp_in"), m.layout.name(1, "mlp_out")]
    ids = torch.tensor([m.tokenizer("The capital of France is")["input_ids"]])
    torch.manual_seed(0)
    tuner = LoraModel(m.model, LoraConfig(r=4, lora_alpha=8, target_modules=names,
                                          fan_in_fan_out=bool(m.layout.conv1d)), ADAPTER_NAME)
    a, b = {}, {}
    try:
        by_id = {id(x): n for n, x in m.model.named_modules()}
        for w in m.model.modules():
            if hasattr(w, "lora_B") and ADAPTER_NAME in w.lora_B:
                torch.nn.init.normal_(w.lora_B[ADAPTER_NAME].weight, std=0.5)
                a[by_id[id(w)]] = w.lora_A[ADAPTER_NAME].weight.detach().clone()
                b[by_id[id(w)]] = w.lora_B[ADAPTER_NAME].weight.detach().clone()
        m.model.eval()
        with torch.no_grad():
            peft_logits = m.model(input_ids=ids).logits
    finally:
        tuner.unload()
    with torch.no_grad():
        plain = m.model(input_ids=ids).logits
        with Adapter(a, b, 2.0).active(m.model):
            hooked = m.model(input_ids=ids).logits
        again = m.model(input_ids=ids).logits
    assert not torch.allclose(plain, peft_logits)
    assert torch.allclose(hooked, peft_logits, atol=1e-5)
    assert torch.equal(again, plain)  # the hooks are gone after the block


def test_training_leaves_the_model_as_it_was(pm):
    m = tiny_model("gpt2", pm)
    m.model.train()
    m.model.transformer.wte.weight.requires_grad_(False)
    modules = [(n, type(x)) for n, x in m.model.named_modules()]
    flags = {n: p.requires_grad for n, p in m.model.named_parameters()}
    state = {k: v.clone() for k, v in m.model.state_dict().items()}
    settings = LoraSettings(rank=2, alpha=8, dropout=0.1, lr=1e-2, weight_decay=0.01, epochs=3, batch_size=2,
                            stop_loss=0.0, seed=0)
    adapter, info = train_adapter(m, [m.layout.name(0, "mlp_in")], default_requests(), settings)
    assert info["epochs"] == 3 and adapter.modules == [m.layout.name(0, "mlp_in")]
    assert [(n, type(x)) for n, x in m.model.named_modules()] == modules
    assert {n: p.requires_grad for n, p in m.model.named_parameters()} == flags
    assert m.model.training
    assert all(torch.equal(state[k], v) for k, v in m.model.state_dict().items())


def test_out_of_scope_prompt_is_not_routed(pm):
    m = tiny_model("gpt2", pm)
    far = ["0 1 2 3 4 5"]
    before = m.next_token_logprobs(far)
    m.edit("ppa", default_requests()[:1], {"epochs": 5, "threshold": 0.999})
    assert m.memory_lookup(far)[1] == [None]
    assert torch.equal(m.next_token_logprobs(far), before)
    assert isinstance(m.memory_lookup([default_requests()[0].text])[1][0], PluginRouter)


@pytest.mark.parametrize("params, where", [
    ({"rank": 0}, "rank"),
    ({"alpha": 0}, "alpha"),
    ({"dropout": 1.0}, "dropout"),
    ({"lr": 0}, "lr"),
    ({"epochs": 0}, "epochs"),
    ({"threshold": 1.5}, "threshold"),
    ({"pooling": "max"}, "pooling"),
    ({"modules": []}, "modules"),
    ({"modules": ["mlp_in", "mlp_in"]}, "modules"),
    ({"modules": ["attn"]}, "modules"),
    ({"layers": []}, "layers"),
    ({"layers": [0, 0]}, "layers"),
])
def test_bad_params_are_refused(pm, params, where):
    cls = pm.editors.get("ppa")
    with pytest.raises(ConfigError, match=where):
        cls(params)


@pytest.mark.parametrize("params, where", [
    ({"layers": [9]}, "layers"),
    ({"gate_layer": 9}, "gate_layer"),
    ({"modules": ["mlp_gate"]}, "modules"),
])
def test_params_the_model_cannot_take_are_refused(pm, params, where):
    m = tiny_model("gpt2", pm)
    editor = pm.editors.get("ppa")(params)
    with pytest.raises(ConfigError) as e:
        editor.check_model(m)
    assert where in (e.value.where or "")
    with pytest.raises(KmeError):
        m.edit(editor, default_requests()[:1])
    assert m.stack == []


def test_a_module_peft_refuses_leaves_the_model_unwrapped(pm):
    m = tiny_model("gpt2", pm)
    modules = [(n, type(x)) for n, x in m.model.named_modules()]
    settings = LoraSettings(rank=2, alpha=8, dropout=0.1, lr=1e-2, weight_decay=0.01, epochs=1, batch_size=2,
                            stop_loss=0.0, seed=0)
    with pytest.raises(KmeError, match="peft cannot put LoRA modules"):
        train_adapter(m, [m.layout.name(0, "mlp_in"), m.layout.name(0, "ln_attn")], default_requests(), settings)
    assert [(n, type(x)) for n, x in m.model.named_modules()] == modules
