"""Presets: explicit params > the matching preset > code defaults, recorded per param; the
statistics corpus is registered, never guessed."""

from __future__ import annotations

import json

import pytest
import toyplugins
from conftest import write_pipeline

import kme
from kme.errors import ConfigError, UnknownComponentError
from kme.presets import ModelIdentity, ModelMatch, Preset, find_preset, resolve_params

TINY = ModelIdentity(alias=None, fingerprint="f00", model_type="gpt2", num_layers=4, hidden_size=32,
                     intermediate_size=128)


class _Presets:
    """Presets for the toy editor: by shape, by alias, by fingerprint."""

    def __init__(self, *presets: Preset):
        self.presets = presets

    @kme.hookimpl
    def kme_register_presets(self, register):
        for p in self.presets:
            register(p)


def _pm(*presets: Preset):
    return kme.build_plugin_manager({"toy": toyplugins, "toy-presets": _Presets(*presets)}, load_entrypoints=False)


SHAPE = Preset(name="toy/shape", editor="toy_shift", model=ModelMatch(model_type="gpt2", num_layers=4),
               params={"scale": 0.25, "layer": 1})
ALIAS = Preset(name="toy/alias", editor="toy_shift", model=ModelMatch(alias="tiny"), params={"scale": 0.5})
PRINT = Preset(name="toy/print", editor="toy_shift", model=ModelMatch(fingerprint="f00"), params={"scale": 0.75})


def test_model_match_needs_something_to_match():
    with pytest.raises(ValueError, match="alias, a fingerprint or a model_type"):
        ModelMatch()
    with pytest.raises(ValueError, match="need a model_type"):
        ModelMatch(alias="x", num_layers=4)
    assert ModelMatch(model_type="gpt2", num_layers=4).matches(TINY)
    assert not ModelMatch(model_type="gpt2", num_layers=48).matches(TINY)
    assert not ModelMatch(alias="tiny").matches(TINY)


def test_explicit_beats_preset_beats_default_and_each_source_is_recorded():
    pm = _pm(SHAPE)
    cls = pm.editors.get("toy_shift")
    r = resolve_params(pm, cls, {"layer": 2}, TINY)
    assert r.preset == "toy/shape" and r.preset_plugin == "toy-presets"
    assert (r.params.scale, r.params.layer, r.params.make_nan) == (0.25, 2, False)
    assert r.sources == {"scale": "preset:toy-presets", "layer": "params", "make_nan": "default"}
    assert r.record()["params"] == {"scale": 0.25, "layer": 2, "make_nan": False}
    off = resolve_params(pm, cls, {}, TINY, "none")
    assert off.preset is None and off.params.scale == 1.0 and set(off.sources.values()) == {"default"}
    # no model yet (kme validate): presets are not applied
    assert resolve_params(pm, cls, {}, None).params.scale == 1.0


def test_the_most_specific_preset_wins():
    pm = _pm(SHAPE, ALIAS, PRINT)
    assert find_preset(pm, "toy_shift", TINY).name == "toy/print"
    assert find_preset(pm, "toy_shift", TINY.model_copy(update={"alias": "tiny", "fingerprint": None})).name == \
        "toy/alias"
    assert find_preset(pm, "toy_shift", TINY.model_copy(update={"fingerprint": None})).name == "toy/shape"
    assert find_preset(pm, "toy_memory", TINY) is None


def test_equally_specific_presets_are_an_error_naming_both():
    twin = SHAPE.model_copy(update={"name": "toy/shape2"})
    with pytest.raises(ConfigError, match="toy/shape.*toy/shape2.*both match") as e:
        find_preset(_pm(SHAPE, twin), "toy_shift", TINY, where="p.yaml: editors[0]")
    assert "preset: NAME" in e.value.render()


def test_a_preset_by_name_must_exist_and_be_for_this_editor():
    pm = _pm(SHAPE)
    with pytest.raises(UnknownComponentError, match="did you mean 'toy/shape'"):
        find_preset(pm, "toy_shift", TINY, "toy/shap")
    with pytest.raises(ConfigError, match="is for editor 'toy_shift', not 'toy_memory'"):
        find_preset(pm, "toy_memory", TINY, "toy/shape")


def test_a_preset_the_editor_refuses_is_reported_with_its_name_and_plugin():
    bad = Preset(name="toy/bad", editor="toy_shift", model=ModelMatch(model_type="gpt2"), params={"scael": 2})
    pm = _pm(bad)
    with pytest.raises(ConfigError, match="preset 'toy/bad' of plugin 'toy-presets'.*refuses"):
        resolve_params(pm, pm.editors.get("toy_shift"), {}, TINY)


def test_duplicate_preset_names_are_refused_at_registration():
    with pytest.raises(kme.KmeError, match="registered twice"):
        kme.build_plugin_manager({"a": _Presets(SHAPE), "b": _Presets(SHAPE)}, load_entrypoints=False)


def test_a_run_records_the_preset_and_the_source_of_every_param(tmp_path, model_dir):
    from kme.pipeline import parse_pipeline, run_pipeline

    pm = _pm(SHAPE)
    spec = parse_pipeline({"model": model_dir, "dataset": {"name": "toy", "limit": 2},
                           "editors": [{"name": "toy_shift", "params": {"make_nan": False}},
                                       {"name": "toy_shift", "preset": "none"}],
                           "metrics": ["toy_logprob"], "output": str(tmp_path / "run")})
    run_pipeline(spec, pm, progress=False)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    first, second = cfg["resolved"]["editors"]
    assert first["preset"] == "toy/shape" and first["params"]["scale"] == 0.25
    assert first["sources"] == {"scale": "preset:toy-presets", "layer": "preset:toy-presets", "make_nan": "params"}
    assert second["preset"] is None and second["params"]["scale"] == 1.0
    assert cfg["resolved"]["model"]["model_type"] == "gpt2" and cfg["resolved"]["model"]["num_layers"] == 4
    rows = [json.loads(x) for x in (tmp_path / "run" / "edits.jsonl").read_text().splitlines()]
    assert [d["editor"] for d in rows[0]["decisions"]] == ["toy_shift", "toy_shift"]


def test_resume_is_refused_when_the_resolved_params_changed(tmp_path, model_dir):
    from kme.pipeline import parse_pipeline, run_pipeline

    data = {"model": model_dir, "dataset": {"name": "toy", "limit": 2}, "editors": ["toy_shift"],
            "metrics": ["toy_logprob"], "output": str(tmp_path / "run")}
    run_pipeline(parse_pipeline(data), _pm(SHAPE), progress=False)
    (tmp_path / "run" / "summary.json").unlink()
    with pytest.raises(ConfigError, match="resolved params differ"):
        run_pipeline(parse_pipeline(data), _pm(SHAPE.model_copy(update={"params": {"scale": 0.3}})),
                     resume=True, progress=False)


def test_validate_names_an_unknown_preset(kme_cli, tmp_path, model_dir):
    p = write_pipeline(tmp_path / "p.yaml", f"""
model: {model_dir}
dataset: {{name: toy, limit: 2}}
editors: [{{name: rome, preset: rome/gpt2-xxl}}]
metrics: [toy_logprob]
""")
    r = kme_cli("validate", p)
    assert r.code == 2 and "editors[0].preset" in r.err and "rome/gpt2-xl" in r.err, r


def test_stats_corpus_auto_on_a_model_without_a_corpus_exits_2_before_any_edit(kme_cli, tmp_path, model_dir):
    p = write_pipeline(tmp_path / "p.yaml", f"""
model: {model_dir}
dataset: {{name: toy, limit: 2}}
editors: [{{name: rome}}]
metrics: [toy_logprob]
output: {tmp_path / "run"}
""")
    r = kme_cli("run", p, "--no-progress")
    assert r.code == 2, r
    first = next(line for line in r.err.splitlines() if line.startswith("error:"))
    assert "editors[0].params.stats_corpus" in first and "'auto' finds no statistics corpus" in first
    assert "file:PATH" in r.err and "hub:wikitext:wikitext-103-raw-v1" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "run" / "edits.jsonl").exists()


def test_kme_presets_lists_and_picks_by_model(kme_cli):
    r = kme_cli("presets", "rome", "--model", "factworld")
    assert r.code == 0, r
    assert "rome/factworld" in r.out and "layer: 0" in r.out and "rome/gpt2-xl" not in r.out
    r = kme_cli("presets", "memit", "--json")
    data = json.loads(r.out)
    names = {p["name"] for p in data["presets"]}
    assert {"memit/gpt2-xl", "memit/gpt-j-6b", "memit/llama3-8b", "memit/factworld"} <= names
    xl = next(p for p in data["presets"] if p["name"] == "memit/gpt2-xl")
    assert xl["params"]["layers"] == [13, 14, 15, 16, 17] and xl["params"]["mom2_update_weight"] == 20000.0
    assert xl["plugin"] == "memit" and "kmeng01/memit" in xl["reference"]
    assert kme_cli("presets", "nope").code == 2


def test_published_presets_match_the_papers_models_by_shape():
    from transformers import GPT2Config, GPTJConfig, LlamaConfig

    from kme.presets import model_identity_from_config

    pm = kme.build_plugin_manager()
    xl = model_identity_from_config(GPT2Config(n_layer=48, n_embd=1600, n_head=25))
    gptj = model_identity_from_config(GPTJConfig(n_layer=28, n_embd=4096, n_head=16))
    llama3 = model_identity_from_config(LlamaConfig(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336))
    llama2 = model_identity_from_config(LlamaConfig(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008))
    assert find_preset(pm, "rome", xl).params["layer"] == 17
    assert find_preset(pm, "memit", gptj).params["layers"] == [3, 4, 5, 6, 7, 8]
    assert find_preset(pm, "alphaedit", llama3).params["L2"] == 10.0
    assert find_preset(pm, "memit", llama2) is None  # Llama-2-7B is not Llama-3-8B
    for name, cls in pm.editors.items():  # every shipped preset is accepted by its editor
        for _, p in pm.presets.items():
            if p.editor == name:
                cls.Params.model_validate(p.params)
