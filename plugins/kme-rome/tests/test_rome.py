import pytest
import torch

from kme import EditRequest, build_plugin_manager
from kme.conformance import default_requests
from kme.errors import KmeError
from kme.testing import tiny_model
from kme_editlib.keys import point_values
from kme_editlib.targets import optimise_targets
from kme_rome.editor import ROMEEditor, ROMEParams

from kme_editlib.testing import TINY_TARGET_PARAMS as TINY_PARAMS


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


def test_edited_layer_outputs_the_optimised_value_at_the_key(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    params = ROMEParams(**{**TINY_PARAMS, "key_contexts": "bare", "layer": 1})
    prefixes = params.prefixes(m)
    v_star = optimise_targets(m, [r], [(1, "mlp_out")], prefixes, params.target_config()).target((1, "mlp_out"))
    h = m.edit(ROMEEditor(params), [r])
    assert h.meta["layer"] == 1 and h.meta["layer_source"] == "params"
    assert list(h.deltas) == ["transformer.h.1.mlp.c_proj.weight"]
    got = point_values(m, [r], [(1, "mlp_out")], "last")[(1, "mlp_out")]
    assert torch.allclose(got, v_star, atol=1e-3 * float(v_star.norm()))
    d = h.deltas["transformer.h.1.mlp.c_proj.weight"]
    assert torch.linalg.matrix_rank(d.double(), rtol=1e-6) == 1


def test_a_batch_is_applied_as_consecutive_rank_one_updates(pm):
    m = tiny_model("llama", pm)
    reqs = default_requests()
    h = m.edit("rome", reqs, TINY_PARAMS)
    assert [r["case_id"] for r in h.meta["per_request"]] == [r.case_id for r in reqs]
    d = h.deltas[m.weight_name(0, "mlp_out")]
    assert torch.linalg.matrix_rank(d.double(), rtol=1e-6) == 3
    records = h.meta["per_request"]
    for key in ("keys_seconds", "z_seconds", "solve_seconds"):  # each total adds up the per-request times
        assert all(x[key] > 0 for x in records)
        assert h.meta[key] == pytest.approx(sum(x[key] for x in records))
    assert all(1 <= x["steps"] <= TINY_PARAMS["v_num_grad_steps"] for x in records)
    parts = sum(h.meta[k] for k in ("stats_seconds", "keys_seconds", "z_seconds", "solve_seconds"))
    assert 0 < h.meta["stats_seconds"] and parts <= h.meta["edit_seconds"]  # the parts fit in the edit's time


def test_bad_inputs_are_clear_errors(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    with pytest.raises(KmeError, match="layer 4 does not exist: the model has 4 layers"):
        m.edit("rome", [r], {**TINY_PARAMS, "layer": 4})
    with pytest.raises(KmeError, match="kl_prompt"):
        m.edit("rome", [r], {**TINY_PARAMS, "kl_prompt": "is a"})
    absent = EditRequest.model_construct(case_id="x", prompt="The capital of Spain is", subject="France",
                                         target_new="Rome", meta={}, paraphrase_prompts=[], neighborhood=[])
    with pytest.raises(KmeError, match="does not occur in prompt"):
        m.edit("rome", [absent], TINY_PARAMS)
    empty = EditRequest.model_construct(case_id="y", prompt="{} speaks", subject="Bob", target_new=" ", meta={},
                                        paraphrase_prompts=[], neighborhood=[])
    with pytest.raises(KmeError, match="empty target_new"):
        m.edit("rome", [empty], TINY_PARAMS)
    with pytest.raises(Exception, match="subject"):
        EditRequest(case_id=1, prompt="The capital of Spain is", subject="France", target_new="Rome")
    assert m.stack == []


def test_released_code_variant_inserts_at_the_bare_prompt(pm):
    """insert_at: bare -- the update direction comes from the prefix-averaged key, the
    constraint holds at the bare prompt's key (as in the authors' code)."""
    m = tiny_model("qwen2", pm)
    r = default_requests()[1]
    params = ROMEParams(**{**TINY_PARAMS, "insert_at": "bare", "layer": 2})
    v_star = optimise_targets(m, [r], [(2, "mlp_out")], params.prefixes(m), params.target_config()).target((2, "mlp_out"))
    m.edit(ROMEEditor(params), [r])
    got = point_values(m, [r], [(2, "mlp_out")], "last")[(2, "mlp_out")]
    assert torch.allclose(got, v_star, atol=1e-3 * float(v_star.norm()))


def test_layer_rule_scales_with_depth(pm):
    from kme_editlib.defaults import default_layers

    assert default_layers(tiny_model("gpt2", pm), "single") == ([0], "rule")
    assert default_layers(tiny_model("llama", pm, n_layer=28), "single") == ([5], "rule")  # GPT-J's 5/28
    assert default_layers(tiny_model("llama", pm, n_layer=28), "window") == ([2, 3, 4, 5, 6, 7], "rule")
    assert default_layers(tiny_model("llama", pm, n_layer=10), "window") == ([1, 2], "rule")


def test_layer_precedence_params_locator_preset_rule(pm):
    """Explicit layers beat a locator; a locator beats a preset's layers; the rule comes last."""
    from kme import Location
    from kme_editlib.defaults import resolve_layers

    m = tiny_model("gpt2", pm)
    loc = Location(locator="causal-tracing", layers=[1, 0])
    assert resolve_layers(m, "single", [0], loc, source="params") == ([0], "params")
    assert resolve_layers(m, "single", [0], loc, source="preset:factworld") == ([1], "locator causal-tracing")
    assert resolve_layers(m, "single", [0], None, source="preset:factworld") == ([0], "preset:factworld")
    assert resolve_layers(m, "window", [0, 1], loc, source="preset:x") == ([0, 1], "locator causal-tracing")
    assert resolve_layers(m, "single", None, None) == ([0], "rule")
