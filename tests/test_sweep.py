"""`kme sweep`: grid expansion, folder names, sweep.json, resume, refusal of a changed sweep,
and the same results from one process and from worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_pipeline

from kme.sweep import SweepSpec, expand_points, point_folder

PIPE = """\
model: {model}
dataset: {{name: toy, limit: 3}}
editors:
  - {{name: toy_shift, params: {{scale: 0.5}}}}
  - toy_memory
metrics: [toy_logprob, toy_phase]
protocol: {{mode: batch, batch_size: 1}}
seed: 0
output: {out}
"""

SWEEP = """\
base: pipe.yaml
grid:
  editors.0.params.scale: [0.25, 0.5]
  dataset.limit: [2, 3]
points:
  - {seed: 1, protocol.batch_size: 2}
"""


def _setup(tmp_path: Path, model_dir: str, sweep: str = SWEEP) -> str:
    write_pipeline(tmp_path / "pipe.yaml", PIPE.format(model=model_dir, out=tmp_path / "unused"))
    return write_pipeline(tmp_path / "sweep.yaml", sweep)


def _values(summary_file: Path) -> dict[str, float]:
    return {k: v["value"] for k, v in json.loads(summary_file.read_text())["metrics"].items()}


def test_grid_expansion_and_points():
    spec = SweepSpec.model_validate({
        "base": "pipeline.yaml",
        "grid": {"editors": [[{"name": "rome"}], [{"name": "memit"}]], "protocol.num_edits": [1, 10, 100],
                 "seed": [0, 1]},
        "points": [{"editors": [{"name": "ike"}, {"name": "memit"}]}],
    })
    pts = expand_points(spec)
    assert len(pts) == 13
    assert pts[0] == {"editors": [{"name": "rome"}], "protocol.num_edits": 1, "seed": 0}
    assert pts[1] == {"editors": [{"name": "rome"}], "protocol.num_edits": 1, "seed": 1}  # last key fastest
    assert pts[7] == {"editors": [{"name": "memit"}], "protocol.num_edits": 1, "seed": 1}
    assert point_folder(7, pts[7]) == "007-editors=memit,protocol.num_edits=1,seed=1"
    assert point_folder(12, pts[12]) == "012-editors=ike+memit"
    assert expand_points(SweepSpec(base="p.yaml", points=[{"seed": 3}])) == [{"seed": 3}]


def test_folder_names_are_filesystem_safe():
    assert point_folder(0, {}) == "000"
    name = point_folder(3, {"dataset.path": "/data/my file.json", "model": {"name": "a/b", "dtype": "float16"},
                            "flag": True, "x": None})
    assert name == "003-dataset.path=_data_my_file.json,model=a_b,flag=true,x=null"
    long = point_folder(1, {"editors.0.params.layers": list(range(40))})
    assert len(long) <= 84 and long.startswith("001-editors.0.params.layers=0+1+2")
    assert long != point_folder(1, {"editors.0.params.layers": list(range(41))})  # the hash tells them apart
    assert point_folder(5, {"seed": 1}, width=4) == "0005-seed=1"


def test_sweep_runs_every_point_and_writes_the_index(kme_cli, tmp_path, model_dir):
    s = _setup(tmp_path, model_dir)
    r = kme_cli("sweep", s, "--out", str(tmp_path / "sw"), "--no-progress")
    assert r.code == 0, r
    root = tmp_path / "sw"
    idx = json.loads((root / "sweep.json").read_text())
    assert idx["kme_sweep_version"] == 1
    assert idx["sweep"]["grid"] == {"editors.0.params.scale": [0.25, 0.5], "dataset.limit": [2, 3]}
    assert idx["base_pipeline"]["dataset"] == {"name": "toy", "limit": 3}
    assert idx["counts"] == {"complete": 5, "failed": 0, "pending": 0}
    folders = [p["folder"] for p in idx["points"]]
    assert folders == ["000-editors.0.params.scale=0.25,dataset.limit=2",
                       "001-editors.0.params.scale=0.25,dataset.limit=3",
                       "002-editors.0.params.scale=0.5,dataset.limit=2",
                       "003-editors.0.params.scale=0.5,dataset.limit=3",
                       "004-seed=1,protocol.batch_size=2"]
    assert idx["points"][4]["overrides"] == {"seed": 1, "protocol.batch_size": 2}
    for p in idx["points"]:
        assert p["status"] == "complete" and p["error"] is None
        assert p["metrics"] == _values(root / p["folder"] / "summary.json")
    cfg = json.loads((root / folders[1] / "config.json").read_text())
    assert cfg["editors"][0]["params"] == {"scale": 0.25} and cfg["dataset"]["limit"] == 3
    assert cfg["output"] == str(root / folders[1])
    assert "000-editors.0.params.scale=0.25,dataset.limit=2" in r.out and "toy_logprob" in r.out
    # each point equals a plain `kme run` with the same overrides (the reused model starts unedited)
    p = str(tmp_path / "pipe.yaml")
    assert kme_cli("run", p, "editors.0.params.scale=0.5", "dataset.limit=3", "--no-progress", "--out",
                   str(tmp_path / "plain")).code == 0
    assert _values(tmp_path / "plain" / "summary.json") == idx["points"][3]["metrics"]


def test_rerun_skips_finished_points_and_resumes_an_interrupted_one(kme_cli, tmp_path, model_dir, monkeypatch):
    s = _setup(tmp_path, model_dir)
    root = tmp_path / "sw"
    monkeypatch.setenv("KME_TOY_INTERRUPT_AT", "2")  # Ctrl-C at the third request: in limit-3 points
    r = kme_cli("sweep", s, "--out", str(root), "--no-progress")
    assert r.code == 130, r
    idx = json.loads((root / "sweep.json").read_text())
    assert [p["status"] for p in idx["points"]] == ["complete", "pending", "pending", "pending", "pending"]
    first = root / idx["points"][0]["folder"] / "summary.json"
    interrupted = root / idx["points"][1]["folder"]
    assert (interrupted / "config.json").exists() and not (interrupted / "summary.json").exists()
    done_rows = (interrupted / "edits.jsonl").read_text().splitlines()
    assert len(done_rows) == 2
    mtime = first.stat().st_mtime_ns
    monkeypatch.delenv("KME_TOY_INTERRUPT_AT")
    r = kme_cli("sweep", s, "--out", str(root), "--no-progress")
    assert r.code == 0, r
    assert "1 of 5 point(s) already complete" in r.err
    assert first.stat().st_mtime_ns == mtime  # not run again
    rows = (interrupted / "edits.jsonl").read_text().splitlines()
    assert rows[:2] == done_rows and [json.loads(x)["case_id"] for x in rows] == [0, 1, 2]  # resumed
    idx = json.loads((root / "sweep.json").read_text())
    assert idx["counts"] == {"complete": 5, "failed": 0, "pending": 0}
    # a third run has nothing left to do
    r = kme_cli("sweep", s, "--out", str(root), "--no-progress")
    assert r.code == 0 and "5 of 5 point(s) already complete" in r.err


def test_a_changed_sweep_is_refused_unless_overwrite(kme_cli, tmp_path, model_dir):
    s = _setup(tmp_path, model_dir, "base: pipe.yaml\ngrid: {dataset.limit: [1, 2]}\n")
    root = tmp_path / "sw"
    assert kme_cli("sweep", s, "--out", str(root), "--no-progress").code == 0
    s = write_pipeline(tmp_path / "sweep.yaml", "base: pipe.yaml\ngrid: {dataset.limit: [1, 3]}\n")
    r = kme_cli("sweep", s, "--out", str(root), "--no-progress")
    assert r.code == 2 and "holds another sweep" in r.err and "--overwrite" in r.err, r
    assert json.loads((root / "sweep.json").read_text())["sweep"]["grid"] == {"dataset.limit": [1, 2]}
    r = kme_cli("sweep", s, "--out", str(root), "--no-progress", "--overwrite")
    assert r.code == 0, r
    idx = json.loads((root / "sweep.json").read_text())
    assert [p["folder"] for p in idx["points"]] == ["000-dataset.limit=1", "001-dataset.limit=3"]
    assert idx["counts"]["complete"] == 2


@pytest.mark.parametrize("sweep,words", [
    ("base: pipe.yaml\ngrid: {protocol.batch_sise: [1, 2]}\n",
     ["[000-protocol.batch_sise=1]", "override 'protocol.batch_sise=1': protocol.batch_sise: unknown field"]),
    ("base: pipe.yaml\ngrid: {editors.0.name: [toy_shift, toy_shfit]}\n",
     ["[001-editors.0.name=toy_shfit]", "override 'editors.0.name=\"toy_shfit\"'"]),
    ("base: pipe.yaml\ngrid: {editors.4.name: [toy_shift]}\n", ["out of range"]),
    ("base: pipe.yaml\ngrid: {seed: []}\n", ["seed", "at least one"]),
    ("base: pipe.yaml\ngird: {seed: [1]}\n", ["gird", "unknown field"]),
    ("base: nope.yaml\ngrid: {seed: [1]}\n", ["nope.yaml", "does not exist"]),
    ("base: pipe.yaml\n", ["no points"]),
])
def test_bad_sweeps_are_refused_before_anything_runs(kme_cli, tmp_path, model_dir, sweep, words):
    s = _setup(tmp_path, model_dir, sweep)
    r = kme_cli("sweep", s, "--out", str(tmp_path / "sw"), "--no-progress")
    assert r.code == 2, r
    for w in words:
        assert w in r.err, r
    assert not (tmp_path / "sw" / "sweep.json").exists()


def test_an_inline_base_and_a_failed_point(kme_cli, tmp_path, model_dir, monkeypatch):
    sweep = (f"base:\n  model: {model_dir}\n  dataset: {{name: toy, limit: 2}}\n  editors: [toy_shift]\n"
             "  metrics: [toy_phase]\ngrid: {dataset.broken: [false, true]}\n")
    s = write_pipeline(tmp_path / "inline.yaml", sweep)
    monkeypatch.chdir(tmp_path)
    r = kme_cli("sweep", s, "--no-progress")  # the second point's dataset fails to load
    assert r.code == 1 and "1 of 2 point(s) failed: 001-dataset.broken=true" in r.err, r
    root = tmp_path / "runs" / "inline"  # the default sweep folder: runs/<sweep file name>
    idx = json.loads((root / "sweep.json").read_text())
    assert [p["status"] for p in idx["points"]] == ["complete", "failed"]
    assert "record 3 is missing field" in idx["points"][1]["error"] and idx["points"][1]["metrics"] is None
    assert idx["counts"] == {"complete": 1, "failed": 1, "pending": 0}
    assert "failed" in r.out  # the table still lists every point


def test_jobs_2_gives_the_same_results_as_jobs_1(kme_cli, tmp_path, model_dir):
    # toy_memory and the toy metrics are deterministic across processes
    write_pipeline(tmp_path / "pipe.yaml", PIPE.format(model=model_dir, out=tmp_path / "unused")
                   .replace("  - {name: toy_shift, params: {scale: 0.5}}\n", ""))
    s = write_pipeline(tmp_path / "sweep.yaml", "base: pipe.yaml\ngrid:\n  dataset.limit: [2, 4]\n"
                                                "  protocol.batch_size: [1, 2]\n")
    assert kme_cli("sweep", s, "--out", str(tmp_path / "j1"), "--no-progress").code == 0
    r = kme_cli("sweep", s, "--out", str(tmp_path / "j2"), "--no-progress", "--jobs", "2")
    assert r.code == 0, r
    a = json.loads((tmp_path / "j1" / "sweep.json").read_text())["points"]
    b = json.loads((tmp_path / "j2" / "sweep.json").read_text())["points"]
    assert [p["folder"] for p in a] == [p["folder"] for p in b]
    assert all(p["status"] == "complete" for p in a + b)
    assert [p["metrics"] for p in a] == [p["metrics"] for p in b]
    for p in a:
        assert _values(tmp_path / "j1" / p["folder"] / "summary.json") == \
            _values(tmp_path / "j2" / p["folder"] / "summary.json")


def test_ray_gives_the_same_results_as_jobs_1(kme_cli, tmp_path, model_dir):
    pytest.importorskip("ray")
    write_pipeline(tmp_path / "pipe.yaml", PIPE.format(model=model_dir, out=tmp_path / "unused")
                   .replace("  - {name: toy_shift, params: {scale: 0.5}}\n", ""))
    s = write_pipeline(tmp_path / "sweep.yaml", "base: pipe.yaml\ngrid:\n  dataset.limit: [2, 3]\n"
                                                "  protocol.batch_size: [1, 2]\n")
    assert kme_cli("sweep", s, "--out", str(tmp_path / "j1"), "--no-progress").code == 0
    r = kme_cli("sweep", s, "--out", str(tmp_path / "ray"), "--no-progress", "--ray", "--jobs", "2")
    assert r.code == 0, r
    a = json.loads((tmp_path / "j1" / "sweep.json").read_text())["points"]
    b = json.loads((tmp_path / "ray" / "sweep.json").read_text())["points"]
    assert [p["folder"] for p in a] == [p["folder"] for p in b]
    assert all(p["status"] == "complete" for p in a + b)
    assert [p["metrics"] for p in a] == [p["metrics"] for p in b]
    for p in a:
        assert _values(tmp_path / "j1" / p["folder"] / "summary.json") == \
            _values(tmp_path / "ray" / p["folder"] / "summary.json")
    assert not (tmp_path / "ray" / ".kme-ray-token").exists()


def test_run_folders_travel_back_when_a_ray_worker_cannot_see_the_sweep_folder(tmp_path):
    from kme.sweep_ray import _pack, _unpack

    src = tmp_path / "run"
    (src / "sub").mkdir(parents=True)
    (src / "summary.json").write_text("{}")
    (src / "sub" / "x.bin").write_bytes(b"\0\1")
    _unpack(_pack(src), tmp_path / "back")
    assert (tmp_path / "back" / "summary.json").read_text() == "{}"
    assert (tmp_path / "back" / "sub" / "x.bin").read_bytes() == b"\0\1"


def test_a_ray_worker_that_cannot_see_the_sweep_folder_returns_the_run_folder(tmp_path, model_dir):
    import yaml

    from kme.sweep import _Task
    from kme.sweep_ray import _SweepWorker, _unpack

    data = yaml.safe_load(PIPE.format(model=model_dir, out=tmp_path / "unused"))
    data["editors"] = ["toy_memory"]
    worker = _SweepWorker(False, [("module", "toyplugins")], 1, str(tmp_path / "no-such-token"), "t")
    far = tmp_path / "far" / "000"  # the driver's path: the worker must not write there
    result = worker.run(_Task(0, data, "sweep.yaml [000]", str(far), False, False), None)
    assert result["status"] == "complete", result
    assert not far.exists()
    _unpack(result.pop("archive"), far)
    assert _values(far / "summary.json") == result["metrics"]


def test_ray_missing_says_how_to_install(kme_cli, tmp_path, model_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    s = _setup(tmp_path, model_dir)
    r = kme_cli("sweep", s, "--out", str(tmp_path / "sw"), "--ray")
    assert r.code == 2 and "kme-core[ray]" in r.err, r
    assert not (tmp_path / "sw").exists()
