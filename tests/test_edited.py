"""The composed edited model: bitwise undo, suspension, NaN guard, batched inference,
memory composition."""

from __future__ import annotations

import random

import pytest
import torch
import toyplugins

import kme
from kme.errors import EditFailedError, KmeError
from kme.testing import tiny_model


def _state(m):
    return {k: v.detach().clone() for k, v in m.model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def reqs():
    return toyplugins.ToyDataset().load()


def test_undo_all_after_many_random_edits_is_bitwise(pm, reqs):
    m = tiny_model("gpt2", pm)
    pristine = _state(m)
    rng = random.Random(0)
    for _ in range(25):
        layer = rng.randrange(m.num_layers)
        m.edit("toy_shift", rng.sample(reqs, rng.randint(1, 3)), {"layer": layer, "scale": rng.uniform(0.1, 3)})
    assert not _same(pristine, _state(m))
    m.undo()
    assert _same(pristine, _state(m)) and m.stack == []


def test_undo_one_edit_equals_never_having_applied_it(pm, reqs):
    a = tiny_model("llama", pm)
    b = tiny_model("llama", pm)
    h1 = a.edit("toy_shift", reqs[:1], {"layer": 1})
    h2 = a.edit("toy_shift", reqs[1:2], {"layer": 1, "scale": 0.3})
    a.edit("toy_shift", reqs[2:3], {"layer": 2})
    a.undo(h2)
    b.edit("toy_shift", reqs[:1], {"layer": 1})
    b.edit("toy_shift", reqs[2:3], {"layer": 2})
    assert _same(_state(a), _state(b))
    assert [h.editor_name for h in a.stack] == ["toy_shift", "toy_shift"] and h1 in a.stack
    with pytest.raises(KmeError, match="not applied"):
        a.undo(h2)


def test_suspended_runs_the_base_model_exactly_and_restores_edits(pm, reqs):
    m = tiny_model("gpt2", pm)
    pristine = _state(m)
    m.edit("toy_shift", reqs[:2], {"scale": 2.0})
    m.edit("toy_memory", reqs[:1])
    edited = _state(m)
    prompt = [reqs[0].text]
    edited_score = m.score(prompt, ["Rome"])[0].logprob
    with m.suspended():
        assert _same(pristine, _state(m))
        assert m.memory_contexts(prompt) == [""]
        h = m.edit("toy_shift", reqs[3:4])
        m.undo(h)
    assert _same(edited, _state(m))
    assert m.score(prompt, ["Rome"])[0].logprob == pytest.approx(edited_score)


def test_edit_left_inside_suspension_is_undone_and_reported(pm, reqs):
    m = tiny_model("gpt2", pm)
    pristine = _state(m)
    with pytest.raises(KmeError, match="not undone"):
        with m.suspended():
            m.edit("toy_shift", reqs[:1])
    assert _same(pristine, _state(m)) and m.stack == []


def test_nan_guard_rolls_back_and_reports(pm, reqs):
    m = tiny_model("gpt2", pm)
    m.edit("toy_shift", reqs[:1])
    before = _state(m)
    with pytest.raises(EditFailedError, match="NaN/inf.*rolled back"):
        m.edit("toy_shift", reqs[1:2], {"make_nan": True})
    assert _same(before, _state(m)) and len(m.stack) == 1


def test_editor_exception_rolls_back_partial_deltas(pm, reqs, monkeypatch):
    m = tiny_model("gpt2", pm)
    before = _state(m)
    monkeypatch.setenv("KME_TOY_CRASH_AT", "1")
    # case 0 is applied by the first apply() call before case 1 crashes a second call
    with pytest.raises(RuntimeError, match="simulated crash"):
        m.edit("toy_shift", reqs[:2])
    assert _same(before, _state(m)) and m.stack == []


def test_batched_scores_match_one_prompt_at_a_time(pm):
    m = tiny_model("gpt_neox", pm)
    prompts = ["The capital of France is", "Alice", "Bob Jones speaks French and", "The"]
    targets = ["Paris", " London town", "Italian", "capital of Italy is Rome"]
    batched = m.score(prompts, targets, batch_size=4)
    for p, t, b in zip(prompts, targets, batched):
        single = m.score([p], [t])[0]
        assert b.target_ids == single.target_ids
        assert b.logprob == pytest.approx(single.logprob, abs=1e-4)
        assert b.token_correct == single.token_correct
    nxt = m.next_token_logprobs(prompts, batch_size=3)
    for i, p in enumerate(prompts):
        assert torch.allclose(nxt[i], m.next_token_logprobs([p])[0], atol=1e-4)
    first = [m.target_ids(p, t)[0] for p, t in zip(prompts, targets)]
    for i in range(len(prompts)):
        assert batched[i].token_logprobs[0] == pytest.approx(float(nxt[i, first[i]]), abs=1e-4)


def test_generation_is_batched_and_padding_correct(pm):
    m = tiny_model("gpt2", pm)
    prompts = ["The capital of France is", "Alice"]
    together = m.generate(prompts, max_new_tokens=4)
    alone = [m.generate([p], max_new_tokens=4)[0] for p in prompts]
    assert together == alone


def test_join_target_spacing():
    assert kme.join_target("The capital is", "Paris") == " Paris"
    assert kme.join_target("The capital is", " Paris") == " Paris"
    assert kme.join_target("The capital is ", "Paris") == "Paris"


def test_memory_editor_composes_with_parametric_edits(pm, reqs):
    m = tiny_model("gpt2", pm)
    r = reqs[0]
    plain = m.score([r.text], [r.target_new])[0].logprob
    m.edit("toy_shift", [r])
    shifted = m.score([r.text], [r.target_new])[0].logprob
    m.edit("toy_memory", [r])
    assert m.memory_contexts([r.text, "unrelated"]) == [f"{r.text} {r.target_new}. ", ""]
    composed = m.score([r.text], [r.target_new])[0].logprob
    manual = m.score([f"{r.text} {r.target_new}. " + r.text], [r.target_new], use_memory=False)[0].logprob
    assert composed == pytest.approx(manual, abs=1e-5)
    assert len({round(plain, 5), round(shifted, 5), round(composed, 5)}) == 3
    m.undo(m.stack[-1])
    assert m.memory_contexts([r.text]) == [""]


def test_single_request_editor_refuses_batches(pm, reqs):
    m = tiny_model("gpt2", pm)
    with pytest.raises(KmeError, match="one request at a time"):
        m.edit("toy_single", reqs[:2])


def test_bad_delta_shape_and_unknown_parameter(pm, reqs):
    m = tiny_model("gpt2", pm)
    h = m.new_handle(pm.editors.get("toy_shift")(), reqs[:1])
    with pytest.raises(KmeError, match="has shape"):
        h.add_delta(m.layout.weight_name(0, "mlp_out"), torch.zeros(3, 3))
    with pytest.raises(KmeError, match="no parameter"):
        h.add_delta("nope.weight", torch.zeros(3))


# The kernel's own throwaway editors pass the same conformance kit plugin authors use.
from kme.conformance import EditorConformance  # noqa: E402


class TestToyShiftConformance(EditorConformance):
    editor_name = "toy_shift"
    params = {"layer": 1}
    plugins = [toyplugins]


class TestToyMemoryConformance(EditorConformance):
    editor_name = "toy_memory"
    plugins = [toyplugins]


def test_memory_hits_can_route_queries_to_another_model(reqs):
    """SERAC-style: in-scope queries are answered by a counterfactual model."""
    other = tiny_model("gpt2", seed=1)

    class Router(kme.Editor):
        name = "toy_router"
        description = "route queries about stored subjects to another model"
        capabilities = kme.Capabilities(kind="memory")

        def apply(self, model, requests, location=None):
            h = model.new_handle(self, requests)
            h.memory = [{"subject": r.subject} for r in requests]
            return h

        def lookup(self, model, handle, prompts):
            return [kme.MemoryHit(prompt_index=i, source=self.name, context="Note: ", router=other)
                    for i, p in enumerate(prompts) if any(m["subject"] in p for m in handle.memory)]

    class Plugin:
        @kme.hookimpl
        def kme_register_editors(self, register):
            register(Router)

    pm2 = kme.build_plugin_manager([Plugin()], load_entrypoints=False)
    m = tiny_model("gpt2", pm2)
    prompts = [reqs[0].text, "The capital of Spain is", reqs[0].text + " a"]
    targets = ["Rome", "Madrid", "city"]
    plain = m.score(prompts, targets)
    m.edit("toy_router", reqs[:1])
    routed = m.score(prompts, targets)
    expect_other = other.score(["Note: " + prompts[0], "Note: " + prompts[2]], ["Rome", "city"])
    assert routed[0].logprob == pytest.approx(expect_other[0].logprob, abs=1e-5)
    assert routed[2].logprob == pytest.approx(expect_other[1].logprob, abs=1e-5)
    assert routed[1].logprob == pytest.approx(plain[1].logprob, abs=1e-5)  # out of scope: unchanged
    nxt = m.next_token_logprobs(prompts)
    assert torch.allclose(nxt[0], other.next_token_logprobs(["Note: " + prompts[0]])[0], atol=1e-5)
    assert torch.allclose(nxt[1], m.next_token_logprobs([prompts[1]], use_memory=False)[0], atol=1e-5)
    assert m.generate(prompts[:2], max_new_tokens=3) == [
        other.generate(["Note: " + prompts[0]], max_new_tokens=3)[0],
        m.generate([prompts[1]], max_new_tokens=3, use_memory=False)[0]]
    m.undo()
    assert m.score(prompts, targets)[0].logprob == pytest.approx(plain[0].logprob, abs=1e-6)
