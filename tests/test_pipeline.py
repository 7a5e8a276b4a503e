"""`kme run` / `kme validate` end to end, the summary format, resume, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_pipeline

PIPE = """\
model: {model}
dataset: {{name: toy, limit: 5}}
editors:
  - {{name: toy_shift, params: {{scale: 0.5}}}}
  - toy_memory
metrics: [toy_logprob, toy_phase]
protocol: {{mode: {mode}, batch_size: 2}}
seed: 0
output: {out}
"""


def _pipe(tmp_path: Path, model_dir: str, mode: str = "batch", **subs: str) -> str:
    text = PIPE.format(model=model_dir, mode=mode, out=tmp_path / "run")
    for old, new in subs.items():
        text = text.replace(old, new)
    return write_pipeline(tmp_path / "pipe.yaml", text)


def test_batch_run_writes_the_run_folder(kme_cli, tmp_path, model_dir):
    r = kme_cli("run", _pipe(tmp_path, model_dir), "--no-progress")
    assert r.code == 0, r
    run = tmp_path / "run"
    for name in ("config.json", "baseline.json", "edits.jsonl", "summary.json", "report.md", "log.jsonl"):
        assert (run / name).is_file(), name
    rows = [json.loads(x) for x in (run / "edits.jsonl").read_text().splitlines()]
    assert [r["case_id"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["batch"] for r in rows] == [0, 0, 1, 1, 2]
    assert all(r["metrics"]["toy_phase"] == 2.0 and r["baseline"]["toy_phase"] == 1.0 for r in rows)
    assert rows[0]["editors"] == ["toy_shift", "toy_memory"]
    assert "toy_shift_s" in rows[0]["timings"]
    s = json.loads((run / "summary.json").read_text())
    assert s["counts"] == {"requests": 5, "batches": 3, "edited": 5, "failed": 0}
    assert "toy_logprob" in r.out and "run folder" in r.out
    events = [json.loads(x)["event"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert events[0] == "run.start" and events[-1] == "run.end" and "edit.applied" in events


def test_summary_json_is_the_documented_public_format(kme_cli, tmp_path, model_dir):
    assert kme_cli("run", _pipe(tmp_path, model_dir), "--no-progress").code == 0
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(s) == {"kme_summary_version", "status", "metrics", "config", "versions", "timings",
                      "counts", "failures"}
    assert s["kme_summary_version"] == 1 and s["status"] == "complete"
    m = s["metrics"]["toy_phase"]
    assert {"value", "baseline", "scoring"} <= set(m)
    assert (m["value"], m["baseline"], m["scoring"], m["n"]) == (2.0, 1.0, "bookkeeping", 5)
    assert s["config"]["dataset"] == {"name": "toy", "limit": 5}
    assert s["config"]["editors"][0] == {"name": "toy_shift", "params": {"scale": 0.5}, "preset": "auto"}
    # every component's full params, each with its source
    res = s["config"]["resolved"]
    assert res["editors"][0]["params"]["scale"] == 0.5 and res["editors"][0]["sources"]["scale"] == "params"
    assert res["editors"][0]["preset"] is None
    assert res["dataset"]["sources"]["limit"] == "params"
    assert all(set(m["sources"]) == set(m["params"]) for m in res["metrics"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolved"] == res
    assert s["config"]["protocol"]["mode"] == "batch"
    assert "kme-core" in s["versions"] and "torch" in s["versions"]
    assert {"total_s", "edit_s", "eval_s", "baseline_s", "load_model_s"} <= set(s["timings"])
    # the batch protocol undoes each batch: the edited values differ from the baseline
    lp = s["metrics"]["toy_logprob"]
    assert lp["value"] != lp["baseline"]


def test_sequential_run_writes_retention(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir, mode="sequential", **{"batch_size: 2}": "batch_size: 2, checkpoints: [2]}"})
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 0, r
    run = tmp_path / "run"
    ret = json.loads((run / "retention.json").read_text())
    assert [c["num_edits"] for c in ret["checkpoints"]] == [2, 5]
    assert ret["checkpoints"][-1]["metrics"]["toy_phase"] == 3.0
    assert (run / "retention.png").stat().st_size > 1000
    s = json.loads((run / "summary.json").read_text())
    assert s["metrics"]["toy_phase"]["value"] == 3.0 and s["metrics"]["toy_phase"]["immediate"] == 2.0
    assert s["metrics"]["toy_phase"]["n"] == 5


@pytest.mark.parametrize("mode", ["batch", "sequential"])
def test_resume_after_interruption_loses_and_repeats_nothing(kme_cli, tmp_path, model_dir, monkeypatch, mode):
    p = _pipe(tmp_path, model_dir, mode=mode)
    monkeypatch.setenv("KME_TOY_INTERRUPT_AT", "2")
    assert kme_cli("run", p, "--no-progress").code == 130  # interrupted (Ctrl-C)
    run = tmp_path / "run"
    first = (run / "edits.jsonl").read_text().splitlines()
    assert [json.loads(x)["batch"] for x in first] == [0, 0]
    assert not (run / "summary.json").exists()
    monkeypatch.delenv("KME_TOY_INTERRUPT_AT")
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 2 and "already holds a run" in r.err and "--resume" in r.err
    r = kme_cli("run", p, "--no-progress", "--resume")
    assert r.code == 0, r
    rows = (run / "edits.jsonl").read_text().splitlines()
    assert rows[:2] == first  # finished work kept as it was
    assert [json.loads(x)["case_id"] for x in rows] == [0, 1, 2, 3, 4]  # nothing repeated
    # resumed run gives the same numbers as an uninterrupted one
    clean = kme_cli("run", p, "--no-progress", "--out", str(tmp_path / "clean"))
    assert clean.code == 0
    a = json.loads((run / "summary.json").read_text())["metrics"]
    b = json.loads((tmp_path / "clean" / "summary.json").read_text())["metrics"]
    assert a["toy_logprob"]["value"] == pytest.approx(b["toy_logprob"]["value"], abs=1e-5)


def test_resume_with_a_different_pipeline_is_refused(kme_cli, tmp_path, model_dir):
    assert kme_cli("run", _pipe(tmp_path, model_dir), "--no-progress").code == 0
    p = _pipe(tmp_path, model_dir, **{"scale: 0.5": "scale: 0.7"})
    r = kme_cli("run", p, "--resume", "--no-progress")
    assert r.code == 2 and "differs from the run" in r.err and "editors" in r.err


def test_locator_feeds_editors(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir, **{"seed: 0": "seed: 0\nlocator: toy_last_layer"})
    assert kme_cli("run", p, "--no-progress").code == 0
    row = json.loads((tmp_path / "run" / "edits.jsonl").read_text().splitlines()[0])
    assert row["location"]["layers"] == [3]


def test_failed_edit_is_recorded_and_the_run_goes_on(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir, **{"scale: 0.5": "make_nan: true"})
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 0, r
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["counts"]["failed"] == 5 and "NaN" in s["failures"][0]["error"]
    assert "Failures" in (tmp_path / "run" / "report.md").read_text()


def test_editor_that_raises_fails_its_batch_and_the_run_goes_on(kme_cli, tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("KME_TOY_CRASH_AT", "2")  # case 2 sits in batch 1 (batch_size 2)
    r = kme_cli("run", _pipe(tmp_path, model_dir), "--no-progress")
    assert r.code == 0, r
    rows = [json.loads(x) for x in (tmp_path / "run" / "edits.jsonl").read_text().splitlines()]
    assert [r["case_id"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["error"] is not None for r in rows] == [False, False, True, True, False]
    assert "RuntimeError: simulated crash" in rows[2]["error"] and "rolled back" in rows[2]["error"]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["counts"]["failed"] == 2 and s["counts"]["edited"] == 3
    assert s["failures"][0]["batch"] == 1 and s["failures"][0]["editor"] == "toy_shift"


def _hold_lock(folder: Path) -> "subprocess.Popen[str]":
    """Another process that holds the run folder's lock, as a running `kme run` does."""
    import subprocess
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time\n"
            f"f = open({str(folder / '.lock')!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush()\n"
            "print('held', flush=True); sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("flag", [None, "--resume", "--overwrite"])
def test_a_run_folder_in_use_by_another_process_is_refused(kme_cli, tmp_path, model_dir, flag):
    p = _pipe(tmp_path, model_dir)
    assert kme_cli("run", p, "--no-progress").code == 0
    before = (tmp_path / "run" / "edits.jsonl").read_text()
    holder = _hold_lock(tmp_path / "run")
    try:
        r = kme_cli("run", p, "--no-progress", *([flag] if flag else []))
    finally:
        holder.communicate("")
    assert r.code == 2 and f"in use by another kme process (pid {holder.pid})" in r.err, r
    assert "Traceback" not in r.err and (tmp_path / "run" / "edits.jsonl").read_text() == before
    r = kme_cli("run", p, "--no-progress", "--overwrite")  # the holder has exited: the lock is free
    assert r.code == 0, r


def test_validate_checks_everything_without_loading_a_model(kme_cli, tmp_path):
    p = write_pipeline(tmp_path / "p.yaml", PIPE.format(model="./does/not/exist", mode="batch", out="x"))
    r = kme_cli("validate", p)
    assert r.code == 0 and "valid" in r.out


BAD = [
    ("model: x\ndataset: {name: toy\n", "malformed YAML at line"),
    ("- a\n- b\n", "expected a mapping"),
    ("model: m\ndataset: toy\nmetrics: [toy_logprob]\nprotocl: {mode: batch}\n", "protocl: unknown field"),
    ("model: m\ndataset: toy\nmetrics: []\n", "metrics: List should have at least 1 item"),
    ("model: m\ndataset: toy\nmetrics: [toy_logprob]\nprotocol: {mode: parallel}\n", "protocol.mode"),
    ("model: m\ndataset: toy\nmetrics: [toy_logprob]\nprotocol: {batch_size: 0}\n", "protocol.batch_size"),
    ("model: m\ndataset: toy\nmetrics: [toy_logprb]\n", "unknown metric 'toy_logprb'; did you mean 'toy_logprob'"),
    ("model: m\ndataset: {name: toi}\nmetrics: [toy_logprob]\n", "unknown dataset 'toi'; did you mean 'toy'"),
    ("model: m\ndataset: toy\neditors: [{name: toy_shift, params: {scael: 1}}]\nmetrics: [toy_logprob]\n",
     "editors[0].params: scael: unknown field"),
    ("model: m\ndataset: {name: toy, limt: 3}\nmetrics: [toy_logprob]\n", "dataset: limt: unknown field"),
    ("model: m\ndataset: toy\neditors: [toy_single]\nmetrics: [toy_logprob]\nprotocol: {batch_size: 4}\n",
     "cannot edit a batch of 4"),
    ("model: m\ndataset: toy\neditors: [{name: 'kme.cli:main'}]\nmetrics: [toy_logprob]\n", "unknown editor 'kme.cli:main'"),
    ("model: m\ndataset: toy\nmetrics: [toy_logprob, toy_logprob]\n", "listed twice"),
    ("model: m\ndataset: toy\nmetrics: [toy_logprob]\nprotocol: {checkpoints: [3]}\n", "only to protocols that keep edits"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_pipelines_exit_2_with_one_clear_message(kme_cli, tmp_path, text, message):
    p = write_pipeline(tmp_path / "bad.yaml", text)
    for cmd in ("validate", "run"):
        r = kme_cli(cmd, p)
        assert r.code == 2, r
        assert message in r.err, r
        assert str(p) in r.err
        assert "Traceback" not in r.err


def test_missing_pipeline_file(kme_cli, tmp_path):
    r = kme_cli("run", str(tmp_path / "nope.yaml"))
    assert r.code == 2 and "does not exist" in r.err


def test_bad_inputs_found_only_at_run_time(kme_cli, tmp_path, model_dir):
    # a dataset record missing a field
    p = _pipe(tmp_path, model_dir, **{"limit: 5": "limit: 5, broken: true"})
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 2 and "toy.json: record 3 is missing field 'subject'" in r.err
    # a model path that does not exist
    p = _pipe(tmp_path, "./no/such/dir", **{"output:": "output: "})
    r = kme_cli("run", p, "--no-progress", "--out", str(tmp_path / "r2"))
    assert r.code == 2 and "model path './no/such/dir' does not exist" in r.err
    # a hub id that cannot be reached
    p = _pipe(tmp_path, "nobody/nothing")
    r = kme_cli("run", p, "--no-progress", "--out", str(tmp_path / "r3"))
    assert r.code == 2 and "hub cannot be reached" in r.err and "local directory" in r.err


def test_python_api_runs_the_same_pipeline(pm, tmp_path, model_dir):
    from kme.pipeline import parse_pipeline, run_pipeline

    spec = parse_pipeline({"model": model_dir, "dataset": {"name": "toy", "limit": 3},
                           "editors": ["toy_shift"], "metrics": ["toy_phase"]})
    s = run_pipeline(spec, pm, out_dir=tmp_path / "api", progress=False)
    assert s["metrics"]["toy_phase"]["value"] == 2.0 and s["counts"]["edited"] == 3


def test_overwrite_replaces_a_previous_run(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir)
    assert kme_cli("run", p, "--no-progress").code == 0
    (tmp_path / "run" / "notes.txt").write_text("mine")
    r = kme_cli("run", p, "--no-progress", "--overwrite")
    assert r.code == 0, r
    assert len((tmp_path / "run" / "edits.jsonl").read_text().splitlines()) == 5
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only the run's own files go
    assert kme_cli("run", p, "--overwrite", "--resume").code == 2


def test_a_model_that_fails_to_load_leaves_no_run_folder(kme_cli, tmp_path, model_dir):
    # a path that does not exist, a bad alias (read as a hub id, unreachable offline): nothing left behind,
    # not even the parents the run created
    for i, model in enumerate(["./no/such/dir", "no-such-alias"]):
        p = _pipe(tmp_path, model)
        out = tmp_path / f"new{i}" / "run"
        r = kme_cli("run", p, "--no-progress", "--out", str(out))
        assert r.code == 2 and "Traceback" not in r.err, r
        assert not out.exists() and not out.parent.exists()
    # a folder that existed before keeps itself and what the user put there; only the run's files go
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    r = kme_cli("run", _pipe(tmp_path, "./no/such/dir"), "--no-progress", "--out", str(mine))
    assert r.code == 2, r
    assert sorted(f.name for f in mine.iterdir()) == ["notes.txt"]
    # a run whose model loads keeps its folder (and its log) when it fails later
    p = _pipe(tmp_path, model_dir, **{"scale: 0.5": "layer: 99"})
    r = kme_cli("run", p, "--no-progress", "--out", str(tmp_path / "late"))
    assert r.code == 2 and "layer 99" in r.err, r
    assert (tmp_path / "late" / "config.json").exists() and (tmp_path / "late" / "log.jsonl").exists()


def test_a_failed_load_on_resume_keeps_the_previous_run(kme_cli, tmp_path, model_dir, monkeypatch):
    from kme.errors import ModelLoadError
    from kme.models import loading

    p = _pipe(tmp_path, model_dir)
    monkeypatch.setenv("KME_TOY_INTERRUPT_AT", "2")
    assert kme_cli("run", p, "--no-progress").code == 130
    monkeypatch.delenv("KME_TOY_INTERRUPT_AT")
    before = {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir() if f.is_file() and f.name != "log.jsonl"}

    def fail(spec, pm):
        raise ModelLoadError("simulated load failure", where="model")

    monkeypatch.setattr(loading, "_load_model", fail)
    r = kme_cli("run", p, "--no-progress", "--resume")
    assert r.code == 2 and "simulated load failure" in r.err
    after = {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir() if f.is_file() and f.name != "log.jsonl"}
    assert after == before and (tmp_path / "run" / "log.jsonl").exists()


def test_validate_lists_every_error_at_once(kme_cli, tmp_path):
    p = write_pipeline(tmp_path / "bad.yaml", """\
model: m
dataset: {name: toy, limt: 3}
editors: [toy_shfit, {name: toy_shift, params: {scael: 1}}]
metrics: [toy_logprb, toy_logprob]
protocol: {mode: toy_reverse, params: {skp: 1}}
""")
    for cmd in ("validate", "run"):
        r = kme_cli(cmd, p)
        assert r.code == 2 and "Traceback" not in r.err, r
        assert "5 problems" in r.err, r
        for where, message in [
            ("protocol.params", "skp: unknown field"),
            ("dataset", "limt: unknown field"),
            ("editors[0].name", "unknown editor 'toy_shfit'; did you mean 'toy_shift'"),
            ("editors[1].params", "scael: unknown field"),
            ("metrics[0]", "unknown metric 'toy_logprb'; did you mean 'toy_logprob'"),
        ]:
            line = next((x for x in r.err.splitlines() if f"{p}: {where}: {message}" in x), None)
            assert line is not None and line.lstrip().startswith("- "), (where, r)
        assert not (tmp_path / "bad").exists()
