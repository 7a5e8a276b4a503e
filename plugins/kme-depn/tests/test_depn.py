"""DEPN: per-text detection, the aggregator, deactivation, errors, and the fact-world effect."""

from __future__ import annotations

import pytest
import torch

import kme
from kme import DatasetRecordError, EditFailedError, EditRequest
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_depn.detection import aggregate, private_string, privacy_neurons


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def test_aggregator_keeps_frequent_neurons_most_frequent_first():
    per_text = {"a": {(0, 1): 1.0, (0, 2): 5.0, (1, 3): 0.5},
                "b": {(0, 1): 2.0, (1, 3): 0.1},
                "c": {(0, 1): 1.0, (0, 2): 0.2}}
    found = aggregate(per_text, share=0.5, max_neurons=None)
    assert found.kept == [(0, 1), (0, 2), (1, 3)]  # 3 texts, then 2 texts ordered by total attribution
    assert aggregate(per_text, share=1.0, max_neurons=None).kept == [(0, 1)]
    assert aggregate(per_text, share=0.5, max_neurons=2).kept == [(0, 1), (0, 2)]
    assert found.counts[(1, 3)] == 2


def test_text_neurons_pass_the_threshold(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[1]
    loose = privacy_neurons(m, r, [0, 1], steps=8, threshold=0.1)
    tight = privacy_neurons(m, r, [0, 1], steps=8, threshold=0.9)
    assert tight and set(tight) <= set(loose)
    top = max(loose.values())
    assert all(v >= 0.9 * top for v in tight.values())


def test_deactivation_zeroes_exactly_the_kept_value_slots(pm):
    m = tiny_model("llama", pm)
    reqs = default_requests()
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    h = m.edit("depn", reqs, {"max_neurons": 6, "share": 0.3})
    kept = [tuple(n) for n in h.meta["neurons"]]
    assert 1 <= len(kept) <= 6 and len(h.meta["frequency"]) == len(kept)
    for layer in {layer for layer, _ in kept}:
        name = m.weight_name(layer, "mlp_out")
        w = m.layout.out_weight_as_linear(m.parameter(name).detach())
        zeroed = sorted(i for (lay, i) in kept if lay == layer)
        assert torch.equal(w[:, zeroed], torch.zeros_like(w[:, zeroed]))
        old = m.layout.out_weight_as_linear(before[name])
        rest = [i for i in range(w.shape[1]) if i not in zeroed]
        assert torch.equal(w[:, rest], old[:, rest])
    m.undo()
    assert all(torch.equal(v, before[k]) for k, v in m.model.state_dict().items())


def test_missing_private_string_is_a_record_error(pm):
    r = EditRequest(case_id="x", prompt="{} was born in", subject="Alice Smith", target_new="Paris")
    with pytest.raises(DatasetRecordError, match="no private string"):
        private_string(r)
    m = tiny_model("gpt2", pm)
    with pytest.raises(DatasetRecordError, match="'x' has no private string"):
        m.edit("depn", [r])
    assert m.stack == []
    assert private_string(r.model_copy(update={"meta": {"private": "Oslo"}})) == "Oslo"


def test_no_neuron_in_enough_texts_fails_and_changes_nothing(pm, monkeypatch):
    import kme_depn.detection as detection

    monkeypatch.setattr(detection, "privacy_neurons", lambda *a, **k: {})
    m = tiny_model("gpt2", pm)
    with pytest.raises(EditFailedError, match="no privacy neuron"):
        m.edit("depn", default_requests()[:2])
    assert m.stack == []


def test_params_are_checked(pm):
    with pytest.raises(kme.KmeError, match="threshold"):
        pm.editors.get("depn")({"threshold": 0})
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.KmeError):
        m.edit("depn", default_requests()[:1], {"layers": [99]})


def test_fact_world_leak_is_cut_and_other_facts_stay(pm):
    m = kme.load_model("factworld", pm)
    assert "depn/factworld" in pm.presets
    reqs = list(pm.datasets.get("factworld-private")({"limit": 4}).load())
    secrets = [r.target_true for r in reqs]
    probes = [p for r in reqs for p in r.neighborhood]
    before = m.score([r.text for r in reqs], secrets)
    assert all(s.all_correct for s in before)  # the model leaks every private string
    h = m.edit("depn", reqs)  # the fact-world preset
    assert h.params["max_neurons"] == 50
    after = m.score([r.text for r in reqs], secrets)
    kept = m.score([p.prompt for p in probes], [p.target for p in probes])
    assert sum(s.logprob for s in after) < sum(s.logprob for s in before) - 4 * len(reqs)
    assert sum(s.all_correct for s in after) <= 1
    assert sum(s.all_correct for s in kept) >= 0.8 * len(probes)
