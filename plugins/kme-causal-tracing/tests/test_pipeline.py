"""`kme run` end to end: causal tracing picks the layer, ROME and MEMIT edit, metrics score."""

import json

import pytest

from kme import build_plugin_manager
from kme.pipeline import parse_pipeline, run_pipeline
from kme.testing import tiny_model
from kme_editlib.testing import TINY_TARGET_PARAMS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-gpt2")
    m = tiny_model("gpt2")
    m.model.save_pretrained(path)
    m.tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("editor,protocol", [("rome", {"mode": "batch", "batch_size": 1}),
                                             ("memit", {"mode": "sequential", "batch_size": 2})])
def test_located_edits_through_kme_run(tmp_path, model_dir, editor, protocol):
    spec = parse_pipeline({
        "model": model_dir,
        "dataset": {"name": "factworld", "limit": 4},
        "locator": {"name": "causal-tracing", "params": {"samples": 2, "output_dir": str(tmp_path / "traces")}},
        "editors": [{"name": editor, "params": TINY_TARGET_PARAMS}],
        "metrics": ["efficacy_score", "neighborhood_score"],
        "protocol": {**protocol, "num_edits": 4},
    })
    summary = run_pipeline(spec, build_plugin_manager(), out_dir=tmp_path / "run", progress=False)
    assert summary["counts"]["edited"] == 4 and summary["counts"]["failed"] == 0
    assert set(summary["metrics"]) == {"efficacy_score", "neighborhood_score"}
    rows = [json.loads(line) for line in (tmp_path / "run" / "edits.jsonl").read_text().splitlines()]
    assert all(r["location"]["locator"] == "causal-tracing" for r in rows)
    assert all(sorted(r["location"]["layers"]) == [0, 1, 2, 3] for r in rows)
    assert len(list((tmp_path / "traces").glob("*.png"))) >= 2
