"""Run protocols as registered components, the training step, and the one metric path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import toyplugins
from conftest import write_pipeline

import kme

PIPE = """\
model: {model}
dataset: {{name: toy, limit: 5{ds}}}
editors: [{editors}]
metrics: [toy_logprob, toy_phase]
protocol: {protocol}
output: {out}
"""


def _pipe(tmp_path: Path, model_dir: str, protocol: str, editors: str = "toy_shift", ds: str = "") -> str:
    return write_pipeline(tmp_path / "pipe.yaml", PIPE.format(model=model_dir, protocol=protocol, editors=editors,
                                                              ds=ds, out=tmp_path / "run"))


def test_builtin_protocols_are_registered_through_the_hook(pm):
    assert {"batch", "sequential"} <= set(pm.protocols)
    assert pm.protocols.owner("batch") == "kme.builtin.protocols"
    assert pm.protocols.get("sequential").kind == "sequential"
    assert pm.provided_by("kme.builtin.protocols") == {"protocols": ["batch", "sequential"]}


def test_a_plugin_protocol_drives_the_run(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir, "{mode: toy_reverse, batch_size: 2, params: {skip: 1}}")
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 0, r
    rows = [json.loads(x) for x in (tmp_path / "run" / "edits.jsonl").read_text().splitlines()]
    assert [row["batch"] for row in rows] == [2, 1, 1]  # 5 requests in batches of 2, last first, batch 0 skipped
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["counts"]["edited"] == 3 and s["metrics"]["toy_phase"]["value"] == 2.0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["protocol"]["params"] == {"skip": 1}
    assert cfg["resolved"]["protocol"] == {"name": "toy_reverse", "params": {"skip": 1},
                                           "sources": {"skip": "params"}}


@pytest.mark.parametrize("protocol,where,message", [
    ("{mode: toy_revers}", "protocol.mode", "did you mean 'toy_reverse'"),
    ("{mode: toy_reverse, params: {skipp: 1}}", "protocol.params", "skipp"),
    ("{mode: toy_reverse, checkpoints: [2]}", "protocol.checkpoints", "keep edits"),
])
def test_bad_protocol_settings_exit_2_naming_the_field(kme_cli, tmp_path, model_dir, protocol, where, message):
    p = _pipe(tmp_path, model_dir, protocol)
    for cmd in ("validate", "run"):
        r = kme_cli(cmd, p)
        assert r.code == 2 and where in r.err and message in r.err, r


def test_a_sequential_kind_protocol_checks_the_editors_capabilities(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir, "{mode: toy_accumulate}", editors="toy_single")
    r = kme_cli("validate", p)
    assert r.code == 2 and "does not support sequential editing" in r.err, r


def test_an_editor_that_needs_training_is_trained_once_on_the_train_split(kme_cli, tmp_path, model_dir):
    toyplugins.TrainedEditor.trained_calls = 0
    p = _pipe(tmp_path, model_dir, "{mode: batch}", editors="toy_trained", ds=", with_train_split: true")
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 0, r
    run = tmp_path / "run"
    assert (run / "trained" / "toy_trained" / "weights.txt").read_text() == "6"
    ed = json.loads((run / "config.json").read_text())["resolved"]["editors"][0]
    assert ed["params"]["checkpoint"] == str(run / "trained" / "toy_trained")
    assert ed["sources"]["checkpoint"] == "trained"
    rows = [json.loads(x) for x in (run / "edits.jsonl").read_text().splitlines()]
    assert all(row["decisions"][0]["trained_on"] == 6 for row in rows)
    assert toyplugins.TrainedEditor.trained_calls == 1
    # a resumed run reuses what was trained, and the resolved params still match
    lines = (run / "edits.jsonl").read_text().splitlines()
    (run / "edits.jsonl").write_text("\n".join(lines[:2]) + "\n")
    (run / "summary.json").unlink()
    r = kme_cli("run", p, "--no-progress", "--resume")
    assert r.code == 0, r
    assert toyplugins.TrainedEditor.trained_calls == 1
    assert len((run / "edits.jsonl").read_text().splitlines()) == 5


def test_a_given_checkpoint_is_used_without_training(kme_cli, tmp_path, model_dir):
    toyplugins.TrainedEditor.trained_calls = 0
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "weights.txt").write_text("42")
    p = _pipe(tmp_path, model_dir, "{mode: batch}", editors=f"{{name: toy_trained, params: {{checkpoint: {ck}}}}}")
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 0, r
    assert toyplugins.TrainedEditor.trained_calls == 0 and not (tmp_path / "run" / "trained").exists()


def test_training_without_a_train_split_is_a_clear_error(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir, "{mode: batch}", editors="toy_trained")
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 2 and "editors[0].params" in r.err and "no train split" in r.err, r


def test_editor_base_train_is_not_silently_a_no_op():
    class Untrainable(kme.Editor):
        name = "untrainable"

    with pytest.raises(NotImplementedError, match="does not implement train"):
        Untrainable().train(None, [], "x")  # type: ignore[arg-type]
    assert Untrainable().is_trained()


class _Seen:
    def __init__(self) -> None:
        self.prepared: list[str] = []

    @kme.hookimpl(wrapper=True)
    def kme_prepare_metric(self, model, metric, requests, context):
        self.prepared.append(metric.name)
        return (yield)


def test_prepare_goes_through_the_hook_once_per_run_and_details_reach_the_summary(tmp_path, model_dir):
    from kme.pipeline import parse_pipeline, run_pipeline

    class Detailed(kme.Metric):
        name = "toy_detailed"
        scoring = "bookkeeping"

        def compute(self, model, requests, context):
            return [1.0] * len(requests)

        def details(self, context=None):
            return {"phase_seen": context.phase}

    @kme.hookimpl
    def kme_register_metrics(register):
        register(Detailed)

    import types

    extra = types.SimpleNamespace(kme_register_metrics=kme_register_metrics)
    seen = _Seen()
    pm = kme.build_plugin_manager([toyplugins, extra, seen], load_entrypoints=False)
    spec = parse_pipeline({"model": model_dir, "dataset": {"name": "toy", "limit": 3}, "editors": ["toy_shift"],
                           "metrics": ["toy_phase", "toy_logprob", "toy_detailed"]})
    s = run_pipeline(spec, pm, out_dir=tmp_path / "api", progress=False)
    assert seen.prepared == ["toy_phase", "toy_logprob", "toy_detailed"]
    assert s["metrics"]["toy_detailed"]["details"] == {"phase_seen": "batch", "ci": [1.0, 1.0]}
    # the base class's details() is empty: only the summary's own interval is there
    assert s["metrics"]["toy_logprob"]["details"] == {"ci": s["metrics"]["toy_logprob"]["ci"]}
    assert "metric_toy_phase_prepare_s" in s["timings"]
    run_pipeline(spec, pm, out_dir=tmp_path / "api", progress=False, resume=True)
    assert len(seen.prepared) == 3  # not prepared again on resume: the cache is read back
