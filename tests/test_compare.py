"""Bootstrap intervals in summary.json and ``kme compare`` (docs/compare.md, docs/summary-format.md)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from kme.pipeline.report import bootstrap_ci, format_ci, report


def make_runs(root: Path, model_dir: str, scales=(0.5, 2.0, 1.0), mode: str = "sequential",
              limit: int = 4) -> Path:
    """Tiny toy runs that differ only in the editor's ``scale`` param, as subfolders of ``root``."""
    import toyplugins

    import kme
    from kme.pipeline import parse_pipeline, run_pipeline

    pm = kme.build_plugin_manager([toyplugins], load_entrypoints=False)
    protocol = {"mode": mode, "batch_size": 2}
    if mode == "sequential":
        protocol["checkpoints"] = [2]
    for scale in scales:
        spec = parse_pipeline({"model": model_dir, "dataset": {"name": "toy", "limit": limit},
                               "editors": [{"name": "toy_shift", "params": {"scale": scale}}],
                               "metrics": ["toy_logprob", "toy_phase"], "protocol": protocol, "seed": 3})
        run_pipeline(spec, pm, out_dir=root / f"scale-{scale}", progress=False)
    return root


def fake_run(path: Path, config: dict, metrics: dict, edits: list[dict] | None = None) -> Path:
    """A run folder holding only what compare/report read: summary.json (and edits.jsonl)."""
    path.mkdir(parents=True, exist_ok=True)
    summary = {"kme_summary_version": 1, "status": "complete", "metrics": metrics,
               "config": {"output": str(path), "resolved": {"x": str(path)}, **config}, "versions": {},
               "timings": {}, "counts": {"requests": len(edits or []), "batches": 1, "edited": 0, "failed": 0},
               "failures": []}
    (path / "summary.json").write_text(json.dumps(summary))
    if edits is not None:
        (path / "edits.jsonl").write_text("".join(json.dumps(e) + "\n" for e in edits))
    return path


def metric(value, ci, baseline=0.5):
    return {"value": value, "baseline": baseline, "scoring": "top1", "n": 10, "higher_is_better": True, "ci": ci,
            "details": {"ci": ci}}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, model_dir) -> Path:
    return make_runs(tmp_path_factory.mktemp("sweep"), model_dir)


# --- intervals ---------------------------------------------------------------------------------


def test_bootstrap_interval_is_deterministic_for_fixed_values():
    assert bootstrap_ci([0.7] * 20, seed=0) == [0.7, 0.7]
    xs = [0.0, 1.0] * 10
    lo, hi = bootstrap_ci(xs, seed=0)
    assert bootstrap_ci(xs, seed=0) == [lo, hi]
    # the mean is 0.5, its standard error sqrt(0.25 / 20) ~ 0.112: a 95% interval of about ± 0.22-0.25
    assert (lo, hi) == pytest.approx((0.25, 0.75))  # pinned: 1,000 resamples, seed 0
    assert bootstrap_ci([0.1, 0.2, 0.3, 0.4, 0.5], seed=0) == pytest.approx([0.18, 0.42])
    assert bootstrap_ci([None, 1.0, float("nan"), 0.0] * 5, seed=0) == bootstrap_ci([1.0, 0.0] * 5, seed=0)


def test_bootstrap_interval_is_seeded():
    import random

    rng = random.Random(1)
    xs = [rng.random() for _ in range(30)]
    assert bootstrap_ci(xs, seed=7) == bootstrap_ci(list(xs), seed=7)
    assert bootstrap_ci(xs, seed=7) != bootstrap_ci(xs, seed=8)


@pytest.mark.parametrize("xs", [[], [0.5], [None, 0.5], [float("nan"), 1.0, None]])
def test_bootstrap_interval_is_none_for_fewer_than_two_values(xs):
    assert bootstrap_ci(xs, seed=0) is None


def test_format_ci_shows_the_half_width():
    assert format_ci(0.93, [0.90, 0.96], digits=2) == "0.93 ± 0.03"
    assert format_ci(0.93, None, digits=2) == "0.93"
    assert format_ci(None, None) == "—"


def test_summary_has_intervals_merged_into_details(sweep):
    s = json.loads((sweep / "scale-0.5" / "summary.json").read_text())
    for name, m in s["metrics"].items():
        assert m["ci"] == m["details"]["ci"], name
        lo, hi = m["ci"]
        assert lo <= hi and not math.isnan(lo)
    # sequential: over the final checkpoint's per-request values (toy_phase is 3.0 for every request there)
    assert s["metrics"]["toy_phase"]["ci"] == [3.0, 3.0]
    per_request = [json.loads(x) for x in (sweep / "scale-0.5" / "checkpoints.jsonl").read_text().splitlines()][-1]
    assert s["metrics"]["toy_logprob"]["ci"] == bootstrap_ci(per_request["per_request"]["toy_logprob"], seed=3)
    assert "±" in (sweep / "scale-0.5" / "report.md").read_text()


def test_report_md_without_intervals_still_renders():
    s = {"config": {"model": {"name": "m"}, "dataset": {"name": "d"}, "editors": [],
                    "protocol": {"mode": "batch", "batch_size": 1}},
         "counts": {"requests": 1, "edited": 0, "failed": 0}, "timings": {}, "failures": [],
         "metrics": {"a": {"value": 0.5, "baseline": None, "scoring": "x", "n": 1, "higher_is_better": True,
                           "ci": None}}}
    assert "| a | 0.5000 |" in report(s)


# --- kme compare ---------------------------------------------------------------------------------


def test_compare_table_shows_only_the_differing_keys(kme_cli, sweep):
    r = kme_cli("compare", str(sweep))
    assert r.code == 0, r
    lines = r.out.splitlines()
    header = lines[0].split()
    assert header[:2] == ["run", "editors.0.params.scale"]
    assert "toy_logprob" in header and "baseline" in header and "toy_phase" in header
    assert not any(k in r.out for k in ("output", "resolved", "model.name", "seed", "dataset.limit"))
    assert [ln.split()[0] for ln in lines[1:4]] == [f"{sweep}/scale-{s}" for s in ("0.5", "1.0", "2.0")]
    assert "3.0000 ± 0.0000" in r.out and "1.0000" in r.out  # toy_phase value and its baseline


def test_compare_formats(kme_cli, sweep):
    runs = [str(sweep / "scale-0.5"), str(sweep / "scale-2.0")]
    md = kme_cli("compare", *runs, "--format", "markdown")
    assert md.code == 0, md
    assert md.out.startswith("| run | editors.0.params.scale | toy_logprob | toy_logprob baseline |")
    assert md.out.splitlines()[1].startswith("| --- |") and md.out.count("\n") >= 4

    rows = list(csv.DictReader(io.StringIO(kme_cli("compare", *runs, "--format", "csv").out)))
    assert [r["editors.0.params.scale"] for r in rows] == ["0.5", "2.0"]
    assert {"toy_logprob", "toy_logprob.ci_lo", "toy_logprob.ci_hi", "toy_logprob.baseline",
            "toy_logprob.disjoint"} <= set(rows[0])
    assert rows[0]["toy_phase"] == "3.0" and rows[0]["toy_phase.disjoint"] == "false"

    j = json.loads(kme_cli("compare", *runs, "--format", "json").out)
    assert j["keys"] == ["editors.0.params.scale"] and j["reference"] == runs[0]
    assert [r["run"] for r in j["runs"]] == runs
    m = j["runs"][1]["metrics"]["toy_phase"]
    assert m["value"] == 3.0 and m["baseline"] == 1.0 and m["ci"] == [3.0, 3.0] and m["disjoint"] is False


def test_compare_by_and_metrics(kme_cli, sweep):
    j = json.loads(kme_cli("compare", str(sweep), "--by", "editors.0.params.scale", "--metrics", "toy_phase",
                           "--format", "json").out)
    assert [r["config"]["editors.0.params.scale"] for r in j["runs"]] == [0.5, 1.0, 2.0]
    assert j["metrics"] == ["toy_phase"] and list(j["runs"][0]["metrics"]) == ["toy_phase"]
    # --by a key that does not differ: still the first column
    j = json.loads(kme_cli("compare", str(sweep), "--by", "seed", "--format", "json").out)
    assert j["keys"] == ["seed", "editors.0.params.scale"]
    bad = kme_cli("compare", str(sweep), "--metrics", "nope")
    assert bad.code == 2 and "nope" in bad.err
    bad = kme_cli("compare", str(sweep), "--by", "no.such.key")
    assert bad.code == 2 and "no.such.key" in bad.err


def test_compare_flags_disjoint_intervals(kme_cli, tmp_path):
    a = fake_run(tmp_path / "a", {"editors": [{"name": "rome"}]}, {"acc": metric(0.93, [0.90, 0.96])})
    b = fake_run(tmp_path / "b", {"editors": [{"name": "memit"}]}, {"acc": metric(0.55, [0.50, 0.60])})
    c = fake_run(tmp_path / "c", {"editors": [{"name": "ft"}]}, {"acc": metric(0.91, [0.85, 0.97])})
    r = kme_cli("compare", str(a), str(b), str(c))
    assert r.code == 0, r
    rows = {ln.split()[0]: ln for ln in r.out.splitlines()[1:4]}
    assert rows[str(b)].rstrip().endswith("0.5500 ± 0.0500 *  0.5000") or "0.5500 ± 0.0500 *" in rows[str(b)]
    assert "*" not in rows[str(a)] and "*" not in rows[str(c)]
    assert "does not overlap the first row's" in r.out and str(a) in r.out.splitlines()[-1]
    assert "editors.0.name" in r.out.splitlines()[0]
    j = json.loads(kme_cli("compare", str(a), str(b), str(c), "--format", "json").out)
    flags = [x["metrics"]["acc"]["disjoint"] for x in j["runs"]]
    assert flags == [False, True, False]
    assert j["runs"][1]["metrics"]["acc"]["disjoint_with"] == [str(a), str(c)]
    assert j["runs"][1]["metrics"]["acc"]["half_width"] == pytest.approx(0.05)
    rows = list(csv.DictReader(io.StringIO(kme_cli("compare", str(a), str(b), "--format", "csv").out)))
    assert [x["acc.disjoint"] for x in rows] == ["false", "true"]
    md = kme_cli("compare", str(a), str(b), "--format", "markdown").out
    assert "0.5500 ± 0.0500 *" in md and "does not overlap" in md


def test_compare_without_summary_exits_2_naming_the_folder(kme_cli, tmp_path, sweep):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = kme_cli("compare", str(sweep), str(empty))
    assert r.code == 2 and str(empty) in r.err and "summary.json" in r.err
    r = kme_cli("compare", str(tmp_path / "missing"))
    assert r.code == 2 and "missing" in r.err
    # a sweep point that did not finish (config.json written, no summary.json)
    sw = tmp_path / "sw"
    fake_run(sw / "p0", {}, {"acc": metric(0.5, None)})
    (sw / "p1").mkdir()
    (sw / "p1" / "config.json").write_text("{}")
    (sw / "sweep.json").write_text("{}")
    r = kme_cli("compare", str(sw))
    assert r.code == 2 and str(sw / "p1") in r.err
