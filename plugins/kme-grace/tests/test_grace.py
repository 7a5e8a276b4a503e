"""GRACE meets the editor contract; the codebook follows the paper's add / expand / split rules,
defers to the base model outside every radius, and undoes and persists exactly."""

from __future__ import annotations

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_grace.codebook import codebook_for


class TestGraceConformance(EditorConformance):
    editor_name = "grace"
    params = {"layer": 2, "steps": 20, "epsilon": 0.5}
    expects_top1 = True


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def _req(case_id, prompt, subject, new):
    return kme.EditRequest(case_id=case_id, prompt=prompt, subject=subject, target_new=new)


def _book(m, layer=2, part="mlp_out"):
    return codebook_for(m, layer, part)


def test_edit_is_top1_and_far_prompts_are_untouched(pm):
    m = tiny_model("gpt2", pm)
    far = ["0 1 2 3 4 5", "The Colosseum is located in"]
    before = m.next_token_logprobs(far)
    r = default_requests()[0]
    m.edit("grace", [r], {"layer": 2, "epsilon": 0.5, "steps": 30})
    assert int(m.next_token_logprobs([r.text])[0].argmax()) == m.target_ids(r.text, r.target_new)[0]
    # each far prompt's last token lies outside the radius, so nothing changes there
    book = _book(m)
    assert len(book) == 1
    assert torch.equal(m.next_token_logprobs(far), before)


def test_add_expand_split_rules(pm):
    m = tiny_model("gpt2", pm)
    book = _book(m)
    a = _req(0, "The capital of {} is", "France", "Rome")
    m.edit("grace", [a], {"layer": 2, "epsilon": 1e-3, "steps": 5})
    assert len(book) == 1 and book.eps.tolist() == pytest.approx([1e-3])
    # the same prompt and label again: expand (no new key), its value is retrained
    h2 = m.edit("grace", [a], {"layer": 2, "epsilon": 1e-3, "steps": 5})
    assert len(book) == 1 and h2.meta["grace"]["expanded"] == 1
    assert [o["op"] for o in h2.memory] == ["set_value"]
    # a nearby prompt with another label: split, both radii become half the distance
    b = _req(1, "The capital of {} is", "Franc", "Paris")
    q_a = book.keys[0].clone()
    h3 = m.edit("grace", [b], {"layer": 2, "epsilon": 100.0, "steps": 5})
    assert len(book) == 2 and h3.meta["grace"]["split"] == 1
    d = float(torch.dist(q_a, book.keys[1]))
    assert float(book.eps[0]) == pytest.approx(d / 2 - 1e-5, rel=1e-5)
    assert float(book.eps[1]) == pytest.approx(d / 2, rel=1e-5)
    assert book.labels == ["Rome", "Paris"]
    # a far prompt: add with the initial radius
    c = _req(2, "{} speaks", "Bob Jones", "Italian")
    h4 = m.edit("grace", [c], {"layer": 2, "epsilon": 1e-3, "steps": 5})
    assert len(book) == 3 and h4.meta["grace"]["added"] == 1
    # undoing the split restores the first key's radius exactly
    m.undo(h4)
    m.undo(h3)
    assert len(book) == 1 and book.eps.tolist() == pytest.approx([1e-3])
    m.undo()
    assert len(book) == 0 and book.hook is None


def test_same_label_within_reach_expands_the_radius(pm):
    m = tiny_model("gpt2", pm)
    book = _book(m)
    a = _req(0, "The capital of {} is", "France", "Rome")
    b = _req(1, "The capital of {} is", "Franc", "Rome")
    m.edit("grace", [a], {"layer": 2, "epsilon": 100.0, "steps": 3})
    q_a = book.keys[0].clone()
    h = m.edit("grace", [b], {"layer": 2, "epsilon": 100.0, "steps": 3})
    assert h.meta["grace"]["expanded"] == 1 and len(book) == 1
    # within the old radius: no radius change needed; the moving-average rule moves the key
    m.undo(h)
    h = m.edit("grace", [b], {"layer": 2, "epsilon": 1e-4, "steps": 3, "expand": "moving_average"})
    assert len(book) == 1
    assert not torch.equal(book.keys[0], q_a)
    assert [o["op"] for o in h.memory] == ["set_key", "set_value"]


def test_sequential_patch_round_trip_rebuilds_the_same_codebook(pm, tmp_path):
    a = tiny_model("llama", pm)
    for r in default_requests():
        a.edit("grace", [r], {"layer": 1, "steps": 5, "epsilon": 2.0})
    a.save_patch(str(tmp_path / "p"))
    b = tiny_model("llama", pm)
    b.load_patch(str(tmp_path / "p"))
    ba, bb = _book(a, 1), _book(b, 1)
    assert ba.refs == bb.refs and ba.labels == bb.labels
    assert torch.equal(ba.keys, bb.keys) and torch.equal(ba.values, bb.values) and torch.equal(ba.eps, bb.eps)
    prompts = [r.text for r in default_requests()]
    assert torch.allclose(a.next_token_logprobs(prompts), b.next_token_logprobs(prompts), atol=1e-6)


def test_suspended_runs_the_base_model(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    base = m.next_token_logprobs([r.text])
    m.edit("grace", [r], {"layer": 2, "steps": 10})
    assert not torch.equal(m.next_token_logprobs([r.text]), base)
    with m.suspended():
        assert torch.equal(m.next_token_logprobs([r.text]), base)
    assert not torch.equal(m.next_token_logprobs([r.text]), base)


def test_bad_layer_is_a_clear_error(pm):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.KmeError, match="layer 9 does not exist"):
        m.edit("grace", default_requests()[:1], {"layer": 9})
    assert m.stack == []
