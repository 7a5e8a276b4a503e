"""CounterFact, zsRE and MQuAKE fixtures end to end through ``kme run`` on a tiny random
GPT-2 saved to disk: the published formats load, validate and evaluate in a real run."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

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


@pytest.mark.parametrize("dataset,expected_ids", [
    ("{{name: counterfact, path: {f}/counterfact.json}}", [0, 1, 2]),
    ("{{name: zsre, path: {f}/zsre_mend_eval.json}}", [0, 1]),
    ("{{name: mquake, path: {f}/MQuAKE-CF-3k-v2.json}}", ["1.0", "1.1", "2.0"]),
])
def test_kme_run_on_fixture(tmp_path, fixtures, tiny_model_dir, dataset, expected_ids):
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(PIPE.format(model=tiny_model_dir, dataset=dataset.format(f=fixtures), out=tmp_path / "run"))
    code, text = kme("run", str(pipe), "--no-progress")
    assert code == 0, text
    rows = [json.loads(x) for x in (tmp_path / "run" / "edits.jsonl").read_text().splitlines()]
    assert [r["case_id"] for r in rows] == expected_ids
    for r in rows:
        assert r["editors"] == [] and r["error"] is None
        # no editor: the run measures the unedited model twice, and both agree
        assert r["metrics"]["accuracy"] == r["baseline"]["accuracy"]
        assert r["metrics"]["accuracy"] in (0.0, 1.0)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["counts"]["requests"] == len(expected_ids)
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
