"""Dotted KEY=VALUE overrides: `kme run/validate PIPELINE [KEY=VALUE ...]` and apply_overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_pipeline

from kme.errors import ConfigError
from kme.overrides import apply_overrides, parse_with_overrides

BASE = {
    "model": "factworld",
    "dataset": {"name": "toy", "limit": 5},
    "editors": [{"name": "toy_shift", "params": {"scale": 0.5}}, "toy_memory"],
    "metrics": ["toy_logprob"],
    "protocol": {"mode": "batch", "batch_size": 2},
    "seed": 0,
}

PIPE = """\
model: {model}
dataset: {{name: toy, limit: 5}}
editors:
  - {{name: toy_shift, params: {{scale: 0.5}}}}
  - toy_memory
metrics: [toy_logprob, toy_phase]
protocol: {{mode: batch, batch_size: 2}}
seed: 0
output: {out}
"""


def _pipe(tmp_path: Path, model_dir: str) -> str:
    return write_pipeline(tmp_path / "pipe.yaml", PIPE.format(model=model_dir, out=tmp_path / "run"))


def test_values_are_parsed_as_yaml():
    out = apply_overrides(BASE, ["protocol.batch_size=3", "editors.0.params.scale=0.25", "seed=7",
                                 "protocol.checkpoints=[1, 2]", "locator={name: toy_last_layer}",
                                 "editors.0.params.make_nan=true", "dataset.split=train", "output=",
                                 "dataset.name='5'"])
    assert out["protocol"]["batch_size"] == 3 and isinstance(out["protocol"]["batch_size"], int)
    assert out["editors"][0]["params"] == {"scale": 0.25, "make_nan": True}
    assert out["seed"] == 7
    assert out["protocol"]["checkpoints"] == [1, 2]
    assert out["locator"] == {"name": "toy_last_layer"}
    assert out["dataset"] == {"name": "5", "limit": 5, "split": "train"}
    assert out["output"] is None
    assert BASE["protocol"]["batch_size"] == 2 and BASE["editors"][0]["params"] == {"scale": 0.5}  # not changed


def test_a_mapping_of_overrides_takes_values_as_they_are():
    out = apply_overrides(BASE, {"dataset.name": "3", "editors": [{"name": "toy_memory"}], "protocol.num_edits": 4})
    assert out["dataset"]["name"] == "3"  # a string, not parsed as YAML
    assert out["editors"] == [{"name": "toy_memory"}]
    assert out["protocol"]["num_edits"] == 4


def test_list_indices_and_named_shorthands():
    out = apply_overrides(BASE, ["editors.1.preset=none", "model.dtype=bfloat16", "metrics.0.params.x=1",
                                 "editors.1=toy_single"])
    assert out["model"] == {"name": "factworld", "dtype": "bfloat16"}
    assert out["metrics"] == [{"name": "toy_logprob", "params": {"x": 1}}]
    assert out["editors"][1] == "toy_single"  # replaced whole, after the preset override
    # an option already under dataset.params is overridden there (not given twice)
    nested = {**BASE, "dataset": {"name": "toy", "params": {"limit": 5}}}
    assert apply_overrides(nested, ["dataset.limit=2"])["dataset"] == {"name": "toy", "params": {"limit": 2}}


@pytest.mark.parametrize("override,words", [
    ("editors.2.name=x", ["editors.2.name=x", "index 2 is out of range", "editors has 2 item(s)"]),
    ("editors.-1.name=x", ["out of range"]),
    ("editors.first.name=x", ["editors is a list", "by number"]),
    ("seed.value=1", ["seed.value=1", "seed is 0", "not a mapping or list"]),
    ("editors.0.name.x=1", ["editors.0.name", "not a mapping"]),
    ("protocol.batch_size", ["must be KEY=VALUE"]),
    ("=3", ["dotted path"]),
    ("a..b=3", ["dotted path"]),
    ("seed=[1", ["malformed YAML"]),
])
def test_bad_overrides_name_the_override(override, words):
    with pytest.raises(ConfigError) as e:
        apply_overrides(BASE, [override])
    assert e.value.exit_code == 2
    for w in words:
        assert w in e.value.render(), e.value.render()


def test_schema_errors_name_the_override():
    with pytest.raises(ConfigError) as e:
        parse_with_overrides(BASE, ["protocol.batch_sise=3"], "pipe.yaml")
    text = e.value.render()
    assert "pipe.yaml: override 'protocol.batch_sise=3': protocol.batch_sise: unknown field" in text
    with pytest.raises(ConfigError) as e:
        parse_with_overrides(BASE, ["protocol.batch_size=true", "seed=1"], "pipe.yaml")
    assert "override 'protocol.batch_size=true': protocol.batch_size:" in str(e.value)
    assert "seed=1" not in str(e.value)  # only the override at fault is named
    spec = parse_with_overrides(BASE, ["protocol.batch_size=4"], "pipe.yaml")
    assert spec.protocol.batch_size == 4


def test_validate_with_overrides(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir)
    r = kme_cli("validate", p, "protocol.batch_size=3", "editors.0.params.scale=0.1")
    assert r.code == 0, r
    assert "valid with 2 override(s)" in r.out
    r = kme_cli("validate", p, "protocol.batch_sise=3")
    assert r.code == 2 and "override 'protocol.batch_sise=3': protocol.batch_sise: unknown field" in r.err, r
    # component errors name the override too
    r = kme_cli("validate", p, "editors.0.name=toy_shfit")
    assert r.code == 2 and "override 'editors.0.name=toy_shfit'" in r.err and "toy_shift" in r.err, r
    r = kme_cli("validate", p, "editors.0.params.nope=1")
    assert r.code == 2 and "override 'editors.0.params.nope=1'" in r.err and "nope" in r.err, r
    r = kme_cli("validate", p, "editors.5.params.scale=1")
    assert r.code == 2 and "override 'editors.5.params.scale=1'" in r.err and "out of range" in r.err, r
    r = kme_cli("validate", p, "seed.x=1")
    assert r.code == 2 and "override 'seed.x=1'" in r.err, r


def test_run_with_overrides_records_the_resolved_pipeline(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir)
    r = kme_cli("run", p, "dataset.limit=3", "editors.0.params.scale=0.25", "protocol.batch_size=1",
                "--no-progress", "--out", str(tmp_path / "ov"))
    assert r.code == 0, r
    cfg = json.loads((tmp_path / "ov" / "config.json").read_text())
    assert cfg["dataset"] == {"name": "toy", "limit": 3}
    assert cfg["editors"][0]["params"] == {"scale": 0.25}
    assert cfg["protocol"]["batch_size"] == 1
    assert cfg["resolved"]["editors"][0]["params"]["scale"] == 0.25
    s = json.loads((tmp_path / "ov" / "summary.json").read_text())
    assert s["counts"]["requests"] == 3 and s["counts"]["batches"] == 3
    # resuming needs the same overrides: without them the pipeline differs
    r = kme_cli("run", p, "--resume", "--no-progress", "--out", str(tmp_path / "ov"))
    assert r.code == 2 and "differs from the run" in r.err
    # overrides are equivalent to editing the file
    text = Path(p).read_text().replace("limit: 5", "limit: 3").replace("scale: 0.5", "scale: 0.25") \
        .replace("batch_size: 2", "batch_size: 1")
    p2 = write_pipeline(tmp_path / "pipe2.yaml", text)
    assert kme_cli("run", p2, "--no-progress", "--out", str(tmp_path / "edited")).code == 0
    a = json.loads((tmp_path / "edited" / "summary.json").read_text())["metrics"]
    assert {k: v["value"] for k, v in a.items()} == {k: v["value"] for k, v in s["metrics"].items()}


def test_run_with_a_bad_override_writes_nothing(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model_dir)
    r = kme_cli("run", p, "protocol.batch_size=0", "--no-progress")
    assert r.code == 2 and "override 'protocol.batch_size=0'" in r.err
    r = kme_cli("run", p, "dataset.limt=0", "--no-progress")
    assert r.code == 2 and "override 'dataset.limt=0'" in r.err, r
    assert not (tmp_path / "run").exists()
