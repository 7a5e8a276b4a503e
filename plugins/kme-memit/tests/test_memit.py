import pytest
import torch

from kme import Location, build_plugin_manager
from kme.conformance import default_requests
from kme.errors import KmeError
from kme.testing import tiny_model
from kme_editlib.keys import point_values
from kme_editlib.testing import TINY_TARGET_PARAMS

PARAMS = {**TINY_TARGET_PARAMS, "layers": [0, 1, 2]}


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


def test_every_critical_layer_is_updated_and_the_residual_shrinks(pm):
    m = tiny_model("gpt_neox", pm)
    reqs = default_requests()
    before = point_values(m, reqs, [(2, "block")], "last")[(2, "block")]
    h = m.edit("memit", reqs, PARAMS)
    assert sorted(h.deltas) == [m.weight_name(i, "mlp_out") for i in (0, 1, 2)]
    assert h.meta["layers"] == [0, 1, 2] and h.meta["mom2_update_weight_source"] == "rule"
    assert h.meta["mom2_update_weight"] == pytest.approx(128 * 15000 / 16384)
    after = point_values(m, reqs, [(2, "block")], "last")[(2, "block")]
    first = h.meta["per_layer"][0]["residual_norm"]
    # the residual left after the top layer is smaller than the one the first layer saw
    z_dist = [x["residual_norm"] for x in h.meta["per_layer"]]
    assert z_dist[-1] < first
    assert float((after - before).norm()) > 0
    for r in reqs:  # every request's new object becomes the top prediction
        lp = m.next_token_logprobs([r.text])[0]
        assert int(lp.argmax()) == m.target_ids(r.text, r.target_new)[0]


def test_layers_come_from_params_locator_or_rule(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[:1]
    base = {k: v for k, v in PARAMS.items() if k != "layers"}
    h = m.edit("memit", r, base)
    assert h.meta["layer_source"] == "rule" and h.meta["layers"] == [1]
    m.undo()
    h = m.edit("memit", r, {**base, "layer_window": 2}, location=Location(locator="causal-tracing", layers=[2, 0]))
    assert h.meta["layers"] == [1, 2] and h.meta["layer_source"] == "locator causal-tracing"
    m.undo()
    with pytest.raises(KmeError, match="layer 5 does not exist"):
        m.edit("memit", r, {**base, "layers": [3, 5]})
    assert m.stack == []
