import pytest
import torch

from kme import build_plugin_manager
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_editlib.hooks import HookSet, module_at
from kme_kn.attribution import attribute


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


def _prob(m, prompt, tok, layer, scale):
    ids = torch.tensor([m.tokenizer(prompt)["input_ids"]])
    with torch.no_grad(), HookSet() as hs:
        hs.replace_input(module_at(m, layer, "mlp_out"), lambda x: torch.cat([x[:, :-1], x[:, -1:] * scale], 1))
        return float(torch.softmax(m.model(input_ids=ids).logits[0, -1], -1)[tok])


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_attributions_are_complete(family, pm):
    """Integrated gradients sum to P(full activation) − P(zero activation) (completeness)."""
    m = tiny_model(family, pm)
    r = default_requests()[0]
    tok = m.target_ids(r.text, r.target_true)[0]
    attr, act = attribute(m, r.text, tok, [1], steps=64)
    gap = _prob(m, r.text, tok, 1, 1.0) - _prob(m, r.text, tok, 1, 0.0)
    assert float(attr[1].sum()) == pytest.approx(gap, rel=0.05, abs=1e-6)
    assert act[1].shape == attr[1].shape


def test_locator_finds_neurons_and_the_editor_uses_them(pm):
    m = tiny_model("gpt2", pm)
    reqs = default_requests()[:2]
    where = pm.locators.get("knowledge-neurons")({"max_neurons": 5}).locate(m, reqs)
    assert where.locator == "knowledge-neurons" and where.neurons
    per = where.scores["per_request"]
    assert set(per) == {"0", "1"} and all(1 <= len(v) <= 5 for v in per.values())
    h = m.edit("kn", reqs, {}, location=where)
    assert {v["source"] for v in h.meta["neurons"].values()} == {"locator"}
    # only the located neurons' value slots (columns of the output projection) changed
    for module, idx in where.neurons.items():
        d = m.layout.out_weight_as_linear(h.deltas[module + ".weight"])
        changed = (d.abs().sum(0) > 0).nonzero()[:, 0].tolist()
        assert changed == idx


def test_no_neuron_is_a_clear_error(pm):
    from kme.errors import EditFailedError

    m = tiny_model("gpt2", pm)
    with pytest.raises(EditFailedError, match="no knowledge neuron"):
        m.edit("kn", default_requests()[:1], {"threshold": 1.0, "layers": [3]})
