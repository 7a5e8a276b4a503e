"""End to end: ``run_pipeline`` with the batch and sequential protocols on a tiny random GPT-2
writes every metric with its scoring mode, baseline and details."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import kme
from kme import Capabilities, Dataset, EditRequest, Editor, PortabilityQuestion, Probe
from kme.pipeline.spec import PipelineSpec
from kme.pipeline.runner import run_pipeline
from kme_metrics import METRICS

FACTS = [("The capital of {} is", "France", " Rome", " Paris"),
         ("{} speaks", "Bob Jones", " Italian", " French"),
         ("{} was born in", "Alice Smith", " Paris", " London"),
         ("{} works for", "Toko Yasuda", " Acme", " Rome")]


class TinyFacts(Dataset):
    name = "tiny_facts"
    description = "four facts with every kind of probe"
    source_format = "in-memory"

    def load(self) -> list[EditRequest]:
        return [EditRequest(
            case_id=i, prompt=p, subject=s, target_new=new, target_true=true,
            paraphrase_prompts=[f"{s}: " + p.replace("{}", "it")],
            neighborhood=[Probe(prompt="The capital of Spain is", target=" Madrid"),
                          Probe(prompt=f"Facts about {s}", target=" none")][: 1 + i % 2],
            portability=[PortabilityQuestion(prompt=f"Where is {s} from?", target_new=new, kind="multihop")],
            generation_prompts=[f"{s} is"], reference_texts=[f"{s} lives in {new}."],
        ) for i, (p, s, new, true) in enumerate(FACTS)]


class RankOne(Editor):
    """A deterministic rank-one change of one MLP projection per request (wiring, not quality)."""

    name = "rank_one_test"
    description = "test editor"
    capabilities = Capabilities(kind="parametric")

    def apply(self, model: Any, requests: list[EditRequest], location: Any = None) -> Any:
        h = model.new_handle(self, requests)
        name = model.layout.weight_name(0, "mlp_out")
        w = model.parameter(name)
        for r in requests:
            g = torch.Generator().manual_seed(int(r.case_id) + 1)
            h.add_delta(name, torch.randn(w.shape[0], 1, generator=g) @ torch.randn(1, w.shape[1], generator=g))
        return h


class _Plugin:
    @staticmethod
    @kme.hookimpl
    def kme_register_datasets(register: Any) -> None:
        register(TinyFacts)

    @staticmethod
    @kme.hookimpl
    def kme_register_editors(register: Any) -> None:
        register(RankOne)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from kme.testing import tiny_model

    path = tmp_path_factory.mktemp("tiny-gpt2")
    m = tiny_model("gpt2")
    m.model.save_pretrained(str(path))
    m.tokenizer.save_pretrained(str(path))
    return str(path)


def _spec(model_dir: str, mode: str, batch_size: int) -> PipelineSpec:
    metrics: list[Any] = [m for m in METRICS if m not in ("fluency", "consistency")]
    metrics += [{"name": "fluency", "params": {"max_new_tokens": 8}},
                {"name": "consistency", "params": {"max_new_tokens": 8}},
                {"name": "scalability", "params": {"sample_size": 3}}]
    metrics.remove("scalability")
    return PipelineSpec.model_validate({
        "model": model_dir, "dataset": {"name": "tiny_facts"},
        "editors": [{"name": "rank_one_test"}], "metrics": metrics,
        "protocol": {"mode": mode, "batch_size": batch_size}, "seed": 3})


@pytest.mark.parametrize("mode,batch_size", [("batch", 4), ("sequential", 2)])
def test_run_writes_every_metric_with_scoring_and_baseline(model_dir, tmp_path, mode, batch_size):
    pm = kme.build_plugin_manager(plugins=[_Plugin()])
    summary = run_pipeline(_spec(model_dir, mode, batch_size), pm, out_dir=tmp_path / "run", progress=False)
    metrics = summary["metrics"]
    assert set(metrics) == set(METRICS)
    for name, entry in metrics.items():
        assert entry["scoring"] and "baseline" in entry and "higher_is_better" in entry, name
        assert entry["details"]["scoring"] == entry["scoring"], name
    for name in ("accuracy", "generality", "efficacy_score", "neighborhood_score", "token_accuracy",
                 "portability", "multihop_accuracy", "fluency", "consistency", "locality"):
        assert metrics[name]["baseline"] is not None and metrics[name]["value"] is not None, name
    assert metrics["locality"]["baseline"] == 1.0        # the unedited model agrees with itself
    assert metrics["scalability"]["baseline"] is None    # nothing to compare before editing
    assert metrics["scalability"]["n"] == 3 and metrics["scalability"]["details"]
    saved = json.loads((tmp_path / "run" / "baseline.json").read_text())
    assert saved["cache"]["locality"]["greedy"] and saved["cache"]["scalability"]["single_edit_accuracy"]
    if mode == "sequential":
        assert metrics["retainability"]["value"] is not None
        assert metrics["retainability"]["details"]["checkpoint"]["num_edits"] == 4
        assert (tmp_path / "run" / "retention.json").exists() and (tmp_path / "run" / "retention.png").exists()
    else:
        assert metrics["retainability"]["value"] is None
    report = (tmp_path / "run" / "report.md").read_text()
    assert "teacher-forced-exact-match" in report and "greedy-agreement" in report
