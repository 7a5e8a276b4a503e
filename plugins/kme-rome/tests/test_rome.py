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
    assert len(h.meta["requests"]) == 3
    d = h.deltas[m.weight_name(0, "mlp_out")]
    assert torch.linalg.matrix_rank(d.double(), rtol=1e-6) == 3
    for key in ("z_seconds", "solve_seconds", "stats_seconds"):
        assert h.meta[key] >= 0


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


def test_layer_defaults_published_measured_and_rule(pm):
    from kme_editlib.defaults import default_layers

    assert default_layers(tiny_model("gpt2", pm), "rome") == ([0], "rule")
    assert default_layers(tiny_model("gpt2", pm, n_layer=4, d=128), "rome") == ([0], "measured")
    assert default_layers(tiny_model("gpt2", pm, n_layer=4, d=128), "memit") == ([0, 1], "measured")
    assert default_layers(tiny_model("llama", pm, n_layer=10), "memit") == ([1, 2], "rule")
