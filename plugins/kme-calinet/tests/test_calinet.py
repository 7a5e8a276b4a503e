"""CALINET meets the editor contract; its slots calibrate a batch of facts at once with the
base weights frozen, and are removed, switched off and persisted exactly."""

from __future__ import annotations

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model


class TestCalinetConformance(EditorConformance):
    editor_name = "calinet"
    params = {"slots": 8, "steps": 60, "lr": 2e-2}
    expects_top1 = True


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def test_calibrates_a_batch_of_facts_at_once(pm):
    m = tiny_model("gpt2", pm)
    reqs = default_requests()
    before = [s.logprob for s in m.score([r.text for r in reqs], [r.target_new for r in reqs])]
    h = m.edit("calinet", reqs, {"slots": 16, "steps": 150, "lr": 2e-2, "layers": [-1, -2]})
    after = m.score([r.text for r in reqs], [r.target_new for r in reqs])
    assert not h.deltas and set(h.state) == {"2.keys", "2.values", "3.keys", "3.values"}
    assert h.state["3.keys"].shape == (16, 32)
    assert all(s.all_correct for s in after), h.meta
    assert all(a.logprob > b for a, b in zip(after, before))


def test_undo_suspend_and_patch(pm, tmp_path):
    m = tiny_model("gpt_neox", pm)
    probe = [r.text for r in default_requests()]
    base = m.next_token_logprobs(probe)
    m.edit("calinet", default_requests()[:2], {"slots": 4, "steps": 20, "lr": 2e-2})
    m.save_patch(str(tmp_path / "p"))
    other = tiny_model("gpt_neox", pm)
    other.load_patch(str(tmp_path / "p"))
    assert torch.allclose(other.next_token_logprobs(probe), m.next_token_logprobs(probe), atol=1e-6)
    with m.suspended():
        assert torch.equal(m.next_token_logprobs(probe), base)
    m.undo()
    assert torch.equal(m.next_token_logprobs(probe), base)
    assert not m.layout.module(m.model, 3, "mlp")._forward_hooks


def test_retain_term_keeps_unrelated_predictions_closer(pm):
    probe = ["0 1 2 3 4 5 6", "The Eiffel Tower is located in", "Danielle Darrieux's mother tongue is"]
    reqs = default_requests()
    drift = {}
    for w in (0.0, 5.0):
        m = tiny_model("gpt2", pm)
        base = m.next_token_logprobs(probe)
        h = m.edit("calinet", reqs, {"slots": 8, "steps": 80, "lr": 2e-2, "retain_weight": w, "retain_samples": 16,
                                     "retain_tokens": 12})
        assert m.score([r.text for r in reqs], [r.target_new for r in reqs])[0].logprob > -20
        drift[w] = float((m.next_token_logprobs(probe).exp() - base.exp()).abs().sum())
        m.undo(h)
        assert torch.equal(m.next_token_logprobs(probe), base)
    assert drift[5.0] < drift[0.0]
