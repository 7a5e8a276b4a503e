"""CounterFact, zsRE and MQuAKE fixtures end to end through ``kme run`` on a tiny random
GPT-2 saved to disk: the published formats load, validate and evaluate in a real run."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

PIPE = """\
model: {model}
dataset: {dataset}
editors: []
metrics: [accuracy, generality]
protocol: {{mode: batch, batch_size: 8}}
seed: 0
output: {out}
"""


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    from kme.testing import tiny_model, tiny_tokenizer

    d = tmp_path_factory.mktemp("tiny-gpt2")
    tiny_model("gpt2").model.save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    return str(d)


def kme(*args: str) -> tuple[int, str]:
    from kme import cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue() + err.getvalue()


@torch.no_grad()
def _all_argmax(model, prompt: str, target: str) -> float:
    """Survey Eq. 3 recomputed by hand: 1.0 when every target token is the model's argmax
    next token under teacher forcing (one unpadded forward pass), else 0.0."""
    pid = model.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    tid = model.target_ids(prompt, target)
    logits = model.model(input_ids=torch.tensor([pid + tid])).logits[0]
    pred = logits[len(pid) - 1:len(pid) - 1 + len(tid)].argmax(-1)
    return float(pred.tolist() == tid)


@pytest.mark.parametrize("name,file,expected_ids", [
    ("counterfact", "counterfact.json", [0, 1, 2]),
    ("zsre", "zsre_mend_eval.json", [0, 1]),
    ("mquake", "MQuAKE-CF-3k-v2.json", ["1.0", "1.1", "2.0"]),
])
def test_kme_run_on_fixture(tmp_path, fixtures, tiny_model_dir, registry, name, file, expected_ids):
    from kme import build_plugin_manager, load_model

    pipe = tmp_path / "pipe.yaml"
    dataset = f"{{name: {name}, path: {fixtures / file}}}"
    pipe.write_text(PIPE.format(model=tiny_model_dir, dataset=dataset, out=tmp_path / "run"))
    code, text = kme("run", str(pipe), "--no-progress")
    assert code == 0, text
    rows = [json.loads(x) for x in (tmp_path / "run" / "edits.jsonl").read_text().splitlines()]
    assert [r["case_id"] for r in rows] == expected_ids
    # the values the run reports are the ones computed by hand on the saved model
    model = load_model(tiny_model_dir, build_plugin_manager())
    requests = {str(r.case_id): r for r in registry.get(name)({"path": str(fixtures / file)}).load()}
    for r in rows:
        assert r["editors"] == [] and r["error"] is None
        # no editor: the run measures the unedited model twice, and both agree
        assert r["metrics"]["accuracy"] == r["baseline"]["accuracy"]
        req = requests[str(r["case_id"])]
        assert not req.choices
        assert r["metrics"]["accuracy"] == _all_argmax(model, req.text, req.target_new)
        para = [_all_argmax(model, q, req.target_new) for q in req.paraphrase_prompts]
        assert r["metrics"]["generality"] == pytest.approx(sum(para) / len(para))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["counts"]["requests"] == len(expected_ids)
    acc = summary["metrics"]["accuracy"]
    mean = sum(r["metrics"]["accuracy"] for r in rows) / len(rows)
    assert acc["value"] == pytest.approx(mean) and acc["baseline"] == pytest.approx(mean)
    assert summary["metrics"]["accuracy"]["n"] == len(expected_ids)
    assert summary["metrics"]["generality"]["n"] == len(expected_ids)  # every request has a paraphrase


def test_kme_validate_reports_a_bad_dataset_option(tmp_path, fixtures, tiny_model_dir):
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(PIPE.format(model=tiny_model_dir, dataset=f"{{name: counterfact, path: {fixtures}/counterfact.json, "
                                                                "limt: 2}", out=tmp_path / "run"))
    code, text = kme("validate", str(pipe))
    assert code == 2 and "limt" in text and "unknown field" in text, text


def test_kme_run_stops_on_a_malformed_record(tmp_path, fixtures, tiny_model_dir):
    recs = json.loads((fixtures / "counterfact.json").read_text())
    del recs[1]["requested_rewrite"]["subject"]
    bad = tmp_path / "cf.json"
    bad.write_text(json.dumps(recs))
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(PIPE.format(model=tiny_model_dir, dataset=f"{{name: counterfact, path: {bad}}}", out=tmp_path / "run"))
    code, text = kme("run", str(pipe), "--no-progress")
    assert code == 2, text
    assert f"{bad}: record 1: field 'requested_rewrite.subject' is missing" in text
