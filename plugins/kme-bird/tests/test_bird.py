"""BIRD's edit: ROME's rank-one update of ROME's target plus BIRD's term (α = 0 is ROME), the
term's effect on the subject's representation, the fact-world preset, and its errors."""

from __future__ import annotations

import pytest
import torch

import kme
from kme import ConfigError, EditRequest, build_plugin_manager, load_model
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_bird.editor import BIRDEditor, BIRDParams
from kme_bird.objective import bird_term, word_states
from kme_editlib.keys import point_values
from kme_editlib.targets import optimise_targets
from kme_editlib.testing import TINY_TARGET_PARAMS

PHRASES = ["relates to", "is related to"]
TINY = {**TINY_TARGET_PARAMS, "phrases": PHRASES}


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


@pytest.fixture(scope="module")
def factworld(pm):
    return load_model("factworld", pm)


def test_alpha_zero_is_romes_update(pm):
    """α = 0: the edited layer writes ROME's own target v* at the prompt's key, rank one."""
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    params = BIRDParams(**{**TINY, "alpha": 0.0, "layer": 1})
    pt = (1, "mlp_out")
    v_star = optimise_targets(m, [r], [pt], params.prefixes(m), params.target_config()).target(pt)
    h = m.edit(BIRDEditor(params), [r])
    assert h.meta["layer"] == 1 and h.meta["per_request"][0]["bird_term"] is None
    got = point_values(m, [r], [(1, "mlp_out")], "last")[(1, "mlp_out")]
    assert torch.allclose(got, v_star, atol=1e-3 * float(v_star.norm()))
    d = h.deltas["transformer.h.1.mlp.c_proj.weight"]
    assert torch.linalg.matrix_rank(d.double(), rtol=1e-6) == 1


def test_the_term_enters_the_target_and_the_edit_meets_it(pm):
    """α > 0 changes v*; the edit still writes the optimised target, and records the term."""
    m = tiny_model("llama", pm)
    r = default_requests()[1]
    base = BIRDParams(**{**TINY, "alpha": 0.0, "layer": 1})
    bird = BIRDParams(**{**TINY, "alpha": 0.05, "layer": 1})
    prefixes = bird.prefixes(m)
    term = bird_term(m, [r], prefixes, [tuple(PHRASES)], alpha=0.05, beta=1.0, fact_token="last")
    assert len(term.sequences) == len(prefixes) and term.weight == 0.05 and not term.in_stop
    pt = (1, "mlp_out")
    v_rome = optimise_targets(m, [r], [pt], prefixes, base.target_config()).target(pt)
    v_bird = optimise_targets(m, [r], [pt], prefixes, bird.target_config(), extra=term).target(pt)
    assert not torch.allclose(v_rome, v_bird, atol=1e-3 * float(v_rome.norm()))
    h = m.edit(BIRDEditor(bird), [r])
    rec = h.meta["per_request"][0]
    assert rec["phrases"] == PHRASES and rec["bird_term"] is not None and torch.isfinite(torch.tensor(rec["bird_term"]))
    got = point_values(m, [r], [pt], "last")[pt]
    assert torch.allclose(got, v_bird, atol=1e-3 * float(v_bird.norm()))


def test_on_the_fact_world_bird_moves_the_subject_towards_the_new_object(pm, factworld):
    """BIRD's edit leaves the subject's final state closer to ``s + r ≈ o*`` and ``o* + r⁻¹ ≈ s``
    than ROME's objective alone (α = 0) does."""
    r = next(iter(pm.datasets.get("factworld")({"relations": ["capital"], "limit": 1}).load()))
    fwd, inv = factworld.make_editor("bird").params.relation_phrases["capital"]
    rel, rinv, new = word_states(factworld, [""], [fwd, inv, r.target_new])[:, 0]
    quick = {"v_num_grad_steps": 20, "stats_samples": 200, "progress": False}
    dist = {}
    for alpha in (0.0, 0.5):
        factworld.edit("bird", [r], {**quick, "alpha": alpha})
        s = word_states(factworld, [""], [r.subject])[0, 0]
        factworld.undo()
        dist[alpha] = float((s + rel - new).norm() + (new + rinv - s).norm())
    assert dist[0.5] < dist[0.0]


def test_fact_world_preset(factworld):
    ed = factworld.make_editor("bird")
    assert ed.resolution is not None and ed.resolution.preset == "bird/factworld"
    p = ed.params
    assert p.layer == 0 and p.alpha > 2e-4 and p.relation_phrases["capital"] == ("has the capital", "is the capital of")
    from kme_factworld.world import load_world

    assert set(p.relation_phrases) == set(load_world().relations)


def test_bad_inputs_are_clear_errors(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    with pytest.raises(ConfigError, match="no relation phrases for relation None") as e:
        m.edit("bird", [r], {**TINY_TARGET_PARAMS, "relation_phrases": {"capital": PHRASES}})
    assert "relation_phrases has: capital" in str(e.value)
    with pytest.raises(ConfigError, match="both phrases must be non-empty"):
        m.edit("bird", [r], {**TINY, "relation_phrases": {"capital": ["has capital", " "]}})
    with pytest.raises(ConfigError, match="alpha"):
        m.edit("bird", [r], {**TINY, "alpha": -1.0})
    with pytest.raises(kme.KmeError, match="layer 4 does not exist"):
        m.edit("bird", [r], {**TINY, "layer": 4})
    absent = EditRequest.model_construct(case_id="x", prompt="The capital of Spain is", subject="France",
                                         target_new="Rome", target_true=None, relation=None, meta={},
                                         paraphrase_prompts=[], neighborhood=[], portability=[])
    with pytest.raises(kme.KmeError, match="does not occur in prompt"):
        m.edit("bird", [absent], TINY)
    assert m.stack == []
