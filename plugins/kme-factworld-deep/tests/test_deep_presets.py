"""The deep model's presets: named with no params, ROME and MEMIT edit it; causal tracing
finds its fact lookup at the prompt's last token, which is where the presets write."""

from __future__ import annotations

import pytest

import kme
from kme_factworld_deep import CHECKPOINT_DIR
from kme_factworld_deep.presets import PRESETS

pytest.importorskip("kme_factworld")  # the deep world's datasets and corpora live there

pytestmark = pytest.mark.skipif(not (CHECKPOINT_DIR / "model.safetensors").exists(),
                                reason="no shipped deep checkpoint")


def test_presets_are_registered_for_the_deep_alias_only():
    pm = kme.build_plugin_manager()
    names = {p.name for p in PRESETS}
    assert names == {"rome/factworld-deep", "memit/factworld-deep", "alphaedit/factworld-deep"}
    for p in PRESETS:
        assert p.model.alias == "factworld-deep" and p.params["fact_token"] == "last"
        assert pm.presets.get(p.name).params == p.params


def _run(tmp_path, editor: str, limit: int, batch: int) -> dict:
    from kme.pipeline import run_pipeline
    from kme.pipeline.spec import PipelineSpec

    spec = PipelineSpec.model_validate({
        "model": "factworld-deep", "dataset": {"name": "factworld-deep", "distinct_subjects": True, "limit": limit},
        "editors": [editor], "metrics": ["efficacy_score", "paraphrase_score", "neighborhood_score"],
        "protocol": {"mode": "batch", "batch_size": batch}, "seed": 0})
    return run_pipeline(spec, kme.build_plugin_manager(), out_dir=tmp_path / editor, progress=False)


@pytest.mark.parametrize("editor,limit,batch", [("rome", 4, 1), ("memit", 10, 10)])
def test_an_editor_named_with_no_params_takes_on_the_deep_model(tmp_path, editor, limit, batch):
    summary = _run(tmp_path, editor, limit, batch)
    m = summary["metrics"]
    assert m["efficacy_score"]["baseline"] == 0.0
    # measured on 20 / 100 requests: ROME 1.00 / 1.00 / 0.97, MEMIT 1.00 / 0.94 / 0.95
    assert m["efficacy_score"]["value"] >= 0.9 and m["paraphrase_score"]["value"] >= 0.6
    assert m["neighborhood_score"]["value"] >= 0.8
    resolved = summary["config"]["resolved"]["editors"][0]
    assert resolved["preset"] == f"{editor}/factworld-deep" and resolved["params"]["fact_token"] == "last"


def test_causal_tracing_finds_the_lookup_at_the_last_token_in_block_0():
    pm = kme.build_plugin_manager()
    model = kme.load_model("factworld-deep", pm)
    requests = list(pm.datasets.get("factworld-deep")({"distinct_subjects": True, "limit": 6}).load())
    loc = pm.locators.get("causal-tracing")({"window": 1, "kinds": ["mlp"], "rank_token": "last",
                                             "samples": 4}).locate(model, requests)
    mlp = loc.scores["mean_indirect_effect"]["mlp"]
    # measured on 40 facts: 0.924 at block 0, at most 0.015 elsewhere; the subject's token ≤ 0.005
    assert mlp["last"][0] >= 0.5 and max(mlp["last"][1:]) < 0.2
    assert max(mlp["subject_last"]) < 0.1
    assert loc.layers[0] == 0
