"""Independent edits computed together (the batch protocol's precompute) give what each gives alone."""

import pytest
import torch

from kme import EditRequest, build_plugin_manager
from kme.testing import tiny_model
from kme_rome.editor import ROMEEditor

from kme_editlib.testing import TINY_TARGET_PARAMS

# KL and weight decay on, early stop reachable: every term of the optimisation is exercised
PARAMS = {**TINY_TARGET_PARAMS, "layer": 1, "kl_factor": 0.0625, "v_weight_decay": 0.5, "fact_token": "subject_last",
          "v_num_grad_steps": 20}


def _requests() -> list[EditRequest]:
    facts = [("The capital of {} is", "France", "Rome"), ("{} was born in", "Alice Smith", "Paris"),
             ("{} speaks", "Bob Jones", "Italian"), ("{} works for", "Toko Yasuda", "Acme")]
    return [EditRequest(case_id=i, prompt=p, subject=s, target_new=t) for i, (p, s, t) in enumerate(facts)]


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_precomputed_edits_equal_edits_made_one_at_a_time(pm, family):
    m = tiny_model(family, pm)
    reqs = _requests()
    alone = []
    for r in reqs:
        h = m.edit(ROMEEditor(PARAMS), [r])
        alone.append({k: v.clone() for k, v in h.deltas.items()})
        assert h.meta["per_request"][0]["targets_computed_with"] == 1
        m.undo()
    ed = ROMEEditor(PARAMS)
    ed.precompute(m, [[r] for r in reqs])
    for r, want in zip(reqs, alone):
        h = m.edit(ed, [r])
        assert h.meta["per_request"][0]["targets_computed_with"] == len(reqs)
        for name, d in h.deltas.items():
            assert torch.allclose(d, want[name], rtol=1e-5, atol=1e-5 * float(want[name].abs().max())), name
        m.undo()
    assert ed._ready == {}  # each precomputed result is used once


def test_precomputed_results_are_not_used_on_an_edited_model(pm):
    m = tiny_model("gpt2", pm)
    reqs = _requests()
    ed = ROMEEditor(PARAMS)
    ed.precompute(m, [[reqs[0]], [reqs[1]]])
    m.edit(ROMEEditor(PARAMS), [reqs[2]])  # the model is no longer the one precompute saw
    h = m.edit(ed, [reqs[0]])
    assert h.meta["per_request"][0]["targets_computed_with"] == 1
    m.undo()
    m.undo()
    ed.precompute(m, [[reqs[0], reqs[1]], [reqs[2]]])  # a batch of two: only its first request is ready
    h = m.edit(ed, [reqs[0], reqs[1]])
    assert [x["targets_computed_with"] for x in h.meta["per_request"]] == [2, 1]


def test_the_batch_protocol_gives_the_same_records_with_and_without_precompute(pm, tmp_path):
    from kme.pipeline import parse_pipeline, run_pipeline

    def run(precompute: int) -> list[dict]:
        import json

        spec = parse_pipeline({"model": "factworld", "dataset": {"name": "factworld", "limit": 3},
                               "editors": [{"name": "rome", "params": {"v_num_grad_steps": 10}}],
                               "metrics": ["efficacy_score", "locality"],
                               "protocol": {"mode": "batch", "params": {"precompute": precompute}}})
        run_pipeline(spec, pm, out_dir=tmp_path / f"p{precompute}", progress=False)
        return [json.loads(x) for x in (tmp_path / f"p{precompute}" / "edits.jsonl").read_text().splitlines()]

    alone, together = run(0), run(8)
    assert [r["metrics"] for r in alone] == [r["metrics"] for r in together]
    assert [r["decisions"][0]["request"]["targets_computed_with"] for r in together] == [3, 3, 3]
    assert [r["decisions"][0]["request"]["targets_computed_with"] for r in alone] == [1, 1, 1]
    for a, t in zip(alone, together):
        assert t["decisions"][0]["request"]["loss"] == pytest.approx(a["decisions"][0]["request"]["loss"], rel=1e-4)
