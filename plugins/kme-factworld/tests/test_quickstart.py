"""examples/quickstart.yaml validates and runs offline on the fact world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kme
from kme_factworld import CHECKPOINT_DIR

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart.yaml"


def test_quickstart_validates():
    from kme.pipeline.spec import load_pipeline, validate_components

    spec = load_pipeline(QUICKSTART)
    comps = validate_components(spec, kme.build_plugin_manager(), str(QUICKSTART))
    assert spec.model.name == "factworld" and comps.dataset.params.limit == 10
    assert [e.name for e in comps.editors] == ["rome"]


@pytest.mark.skipif(not (CHECKPOINT_DIR / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_quickstart_edits_with_the_preset_and_shows_the_baseline(tmp_path):
    from kme.pipeline import run_pipeline
    from kme.pipeline.spec import load_pipeline

    spec = load_pipeline(QUICKSTART)
    summary = run_pipeline(spec, kme.build_plugin_manager(), out_dir=tmp_path / "run", progress=False)
    assert summary["counts"] == {"requests": 10, "batches": 10, "edited": 10, "failed": 0}
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    metrics = on_disk["metrics"]
    assert set(metrics) == {"efficacy_score", "paraphrase_score", "neighborhood_score", "accuracy", "generality",
                            "locality"}
    # the unedited model answers with the true object, not the counterfactual one ...
    assert metrics["accuracy"]["baseline"] <= 0.05 and metrics["efficacy_score"]["baseline"] <= 0.05
    assert metrics["locality"]["baseline"] >= 0.95
    # ... and ROME with the fact-world preset writes the new one (measured: 1.0 / 1.0 / 0.98)
    assert metrics["efficacy_score"]["value"] >= 0.9 and metrics["accuracy"]["value"] >= 0.8
    assert metrics["generality"]["value"] >= 0.5 and metrics["locality"]["value"] >= 0.9
    rome = on_disk["config"]["resolved"]["editors"][0]
    assert rome["preset"] == "rome/factworld" and rome["sources"]["layer"] == "preset:factworld"
    assert rome["sources"]["kl_position"] == "default" and rome["params"]["insert_at"] == "bare"
