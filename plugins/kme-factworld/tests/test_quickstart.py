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
    assert spec.model.name == "factworld" and comps["dataset"].params.limit == 50


@pytest.mark.skipif(not (CHECKPOINT_DIR / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_quickstart_runs_and_the_unedited_model_knows_the_facts(tmp_path):
    from kme.pipeline import run_pipeline
    from kme.pipeline.spec import load_pipeline

    spec = load_pipeline(QUICKSTART)
    summary = run_pipeline(spec, kme.build_plugin_manager(), out_dir=tmp_path / "run", progress=False)
    assert summary["counts"]["requests"] == 50 if "requests" in summary["counts"] else True
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    metrics = on_disk["metrics"]
    assert set(metrics) >= {"accuracy", "generality", "locality"}
    # the unedited model answers with the true object, not the counterfactual one
    assert metrics["accuracy"]["baseline"] <= 0.05
    assert metrics["locality"]["baseline"] >= 0.95
