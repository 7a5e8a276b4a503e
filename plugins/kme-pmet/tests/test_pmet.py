import pytest

from kme import build_plugin_manager
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_editlib.multilayer import even_spread, sqrt_spread
from kme_editlib.testing import TINY_TARGET_PARAMS


def test_square_root_spread_leaves_more_to_lower_layers():
    assert [sqrt_spread(n) for n in (4, 1)] == [0.5, 1.0]
    assert sqrt_spread(3) > even_spread(3)


def test_attention_is_optimised_but_only_ffn_weights_change():
    pm = build_plugin_manager()
    m = tiny_model("gptj", pm)
    h = m.edit("pmet", default_requests()[:2], {**TINY_TARGET_PARAMS, "layers": [1, 2]})
    assert sorted(h.deltas) == [m.weight_name(1, "mlp_out"), m.weight_name(2, "mlp_out")]
    assert h.meta["attn_delta_norm_mean"] > 0 and h.meta["ffn_delta_norm_mean"] > 0
    assert h.meta["layers"] == [1, 2]
