import json

import pytest

from kme import build_plugin_manager
from kme.conformance import default_requests
from kme.errors import KmeError
from kme.testing import tiny_model
from kme_causal_tracing.trace import embedding_std, trace_request
from kme_editlib.testing import TINY_TARGET_PARAMS


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_trace_is_exact_where_the_answer_is_known(family, pm):
    m = tiny_model(family, pm)
    r = default_requests()[0]
    t = trace_request(m, r, noise_std=3 * embedding_std(m), samples=4, window=1, kinds=("hidden", "mlp", "attn"))
    s0, s1 = t.subject_range
    assert "".join(t.tokens[s0:s1 + 1]).strip() == r.subject
    # the last layer's state at the last token carries the whole prediction
    assert t.effects["hidden"][-1][-1] == pytest.approx(t.p_clean - t.p_corrupted, abs=1e-6)
    # states before the subject are never corrupted: restoring them changes nothing
    for kind in t.effects:
        for i in range(s0):
            assert all(abs(v) < 1e-7 for v in t.effects[kind][i])
    # a non-final token's last-layer state cannot reach the prediction
    assert t.effects["hidden"][s1][-1] == pytest.approx(0.0, abs=1e-7)
    assert t.target == r.target_true


def test_locator_writes_heat_maps_and_ranks_every_layer(tmp_path, pm):
    m = tiny_model("gpt2", pm)
    loc = pm.locators.get("causal-tracing")({"output_dir": str(tmp_path), "samples": 3})
    where = loc.locate(m, default_requests())
    assert sorted(where.layers) == [0, 1, 2, 3]
    assert where.modules == [m.layout.name(where.layers[0], "mlp_out")]
    assert len([a for a in where.artifacts if a.endswith(".png")]) == 3
    data = json.loads((tmp_path / "0.json").read_text())
    assert len(data["indirect_effect"]["mlp"]) == len(data["tokens"])
    assert len(data["indirect_effect"]["mlp"][0]) == 4
    assert json.loads((tmp_path / "summary.json").read_text())["layers"] == where.layers
    # an editor follows the located layer when its own params leave it open
    h = m.edit("rome", default_requests()[:1], TINY_TARGET_PARAMS, location=where)
    assert h.meta["layer"] == where.layers[0] and h.meta["layer_source"] == "locator causal-tracing"


def test_bad_params_are_clear_errors(pm):
    m = tiny_model("gpt2", pm)
    cls = pm.locators.get("causal-tracing")
    with pytest.raises(KmeError, match="rank_by 'attn' is not among"):
        cls({"kinds": ["mlp"], "rank_by": "attn"}).locate(m, default_requests()[:1])
    with pytest.raises(KmeError, match="unknown field"):
        cls({"nois_std": 1.0})
