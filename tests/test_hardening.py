"""Every bad input found by hand or by tests/test_fuzz.py, pinned: one exit-2 message naming
the file and the field, every NaN caught and rolled back, broken plugins reported."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from conftest import write_pipeline

import kme
from kme.conformance import default_requests
from kme.errors import DatasetRecordError, EditFailedError, KmeError
from kme.testing import tiny_model

PIPE = """\
model: {model}
dataset: {{name: toy, limit: 3}}
editors: [{{name: toy_shift, params: {{scale: 0.5}}}}]
metrics: [toy_logprob]
seed: 0
output: {out}
"""


def _pipe(tmp_path: Path, model: str = "tiny", **subs: str) -> str:
    text = PIPE.format(model=model, out=tmp_path / "run")
    for old, new in subs.items():
        assert old in text, old
        text = text.replace(old, new)
    return write_pipeline(tmp_path / "p.yaml", text)


def _one_message(r, *names: str) -> None:
    err = "\n".join(x for x in r.err.splitlines() if not x.startswith("warning: plugin"))  # the test package's
    assert r.code == 2, r
    assert err.startswith("error: ") and "Traceback" not in err, r
    assert len(err.strip().splitlines()) <= 2, r
    for n in names:
        assert n in err, (n, r)


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "binary"])
def test_a_pipeline_that_is_not_utf8(kme_cli, tmp_path, encoding):
    p = tmp_path / "p.yaml"
    text = PIPE.format(model="tiny", out="x") + "# caf\u00e9\n"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff" if encoding == "binary" else text.encode(encoding))
    _one_message(kme_cli("validate", str(p)), str(p), "not UTF-8")


@pytest.mark.parametrize("subs, names", [
    ({"model: tiny": "model: !!int 'abc'"}, ["line 1", "!!int"]),
    ({"model: tiny": "model: !!bool maybe"}, ["line 1"]),
    ({"scale: 0.5": "scale: " + "[" * 3000 + "]" * 3000}, ["nested"]),
    ({"seed: 0": "seed: 18446744073709551616"}, ["seed"]),
    ({"seed: 0": "seed: -1"}, ["seed"]),
    ({"model: tiny": "model: {name: tiny, device: '{}'}"}, ["model.device"]),
    ({"model: tiny": "model: {name: tiny, device: meta}"}, ["model.device"]),
    ({"model: tiny": "model: ''"}, ["model.name"]),
    ({"seed: 0": "seed: 0\nprotocol: {batch_size: yes}"}, ["protocol.batch_size"]),
    ({"seed: 0": "seed: 0\nprotocol: {batch_size: true}"}, ["protocol.batch_size"]),
    ({"limit: 3": "limit: 1:30"}, ["dataset", "limit"]),
    ({"seed: 0": "seed: 0\nseed: 1"}, ["key 'seed' is given twice"]),
    ({"limit: 3": "limit: 2, params: {limit: 3}"}, ["dataset", "limit", "both"]),
    ({"limit: 3": "params: 5"}, ["dataset", "params must be a mapping"]),
    ({"seed: 0": "seed: 0\nx: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg"))}, ["expands"]),
])
def test_malformed_pipeline_values(kme_cli, tmp_path, subs, names):
    p = _pipe(tmp_path, **subs)
    _one_message(kme_cli("validate", p), p, *names)


def test_cuda_on_a_cpu_only_torch_is_refused_before_loading(kme_cli, tmp_path, model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = _pipe(tmp_path, model=f"{{name: {model_dir}, device: cuda}}")
    _one_message(kme_cli("run", p, "--no-progress"), "model.device", "no CUDA")


def test_many_metrics_are_checked_in_linear_time(kme_cli, tmp_path):
    p = _pipe(tmp_path, **{"metrics: [toy_logprob]": "metrics: [" + ", ".join(["toy_logprob"] * 50_000) + "]"})
    t = time.perf_counter()
    r = kme_cli("validate", p)
    _one_message(r, "listed twice")
    assert time.perf_counter() - t < 20


def test_a_layer_the_model_lacks_names_the_param(kme_cli, tmp_path, model_dir):
    p = _pipe(tmp_path, model=model_dir, **{"scale: 0.5": "layer: 99"})
    _one_message(kme_cli("run", p, "--no-progress"), p, "editors[0].params.layer", "layer 99 does not exist")


@pytest.mark.parametrize("template", ["{fact.__class__.__mro__}", "{0}", "{fact[0]}", "{other}", "{", "{fact!r}"])
def test_ike_templates_allow_plain_named_fields_only(kme_cli, tmp_path, template):
    p = _pipe(tmp_path, **{"{name: toy_shift, params: {scale: 0.5}}":
                           "{name: ike, params: {query_template: " + json.dumps(template) + "}}"})
    _one_message(kme_cli("validate", p), p, "editors[0].params", "query_template")


def test_ike_renders_only_its_fields(pm):
    from kme.templates import check_template, render

    assert render("New Fact: {fact}\n", ("fact",), fact="x") == "New Fact: x\n"
    with pytest.raises(ValueError, match="not allowed"):
        check_template("{fact.__init__.__globals__}", ("fact",))


def _counterfact(path: Path, **rewrite: object) -> Path:
    rec = {"case_id": 0, "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Ilsa Marrowdale",
                                               "target_new": {"str": "Danish"}, "target_true": {"str": "Polish"}},
           "paraphrase_prompts": ["Ilsa Marrowdale speaks"], "neighborhood_prompts": ["Teodor Vancrest speaks"]}
    rec.update(rewrite)
    path.write_text(json.dumps([rec]))
    return path


def test_a_prompt_longer_than_the_context_is_a_record_error(kme_cli, tmp_path, model_dir):
    data = _counterfact(tmp_path / "cf.json", paraphrase_prompts=["word " * 5000 + "Ilsa Marrowdale speaks"])
    p = _pipe(tmp_path, model=model_dir, **{"{name: toy, limit: 3}": f"{{name: counterfact, path: {data}}}"})
    _one_message(kme_cli("run", p, "--no-progress"), "request 0", "paraphrase_prompts[0]", "context of 128 tokens")


def test_a_50mb_field_is_refused_when_read(kme_cli, tmp_path):
    data = _counterfact(tmp_path / "cf.json", paraphrase_prompts=["x" * 50_000_000])
    p = _pipe(tmp_path, model=str(tmp_path / "none"),
              **{"{name: toy, limit: 3}": f"{{name: counterfact, path: {data}, on_unusable: error}}"})
    _one_message(kme_cli("run", p, "--no-progress"), str(data), "characters")


def test_scoring_past_the_context_is_a_clear_error(pm):
    m = tiny_model("gpt2", pm)
    with pytest.raises(KmeError, match="longer than the model's context of 128"):
        m.score(["word " * 500], ["x"])
    with pytest.raises(DatasetRecordError, match="prompt with its target is"):
        m.check_fits([kme.EditRequest(case_id=1, prompt="word " * 500 + "{} is", subject="A", target_new="b")])


# -- NaN and exceptions in every editor family ---------------------------------------------
class _NanMemory(kme.Editor):
    name = "nan_memory"
    capabilities = kme.Capabilities(kind="memory")

    def apply(self, model, requests, location=None):
        h = model.new_handle(self, requests)
        h.memory.append({"subject": requests[0].subject, "score": float("nan")})
        return h


class _NanPlugin:
    @kme.hookimpl
    def kme_register_editors(self, register) -> None:
        register(_NanMemory)


@pytest.fixture(scope="module")
def all_pm():
    return kme.build_plugin_manager([_NanPlugin()])


@pytest.mark.parametrize("editor, params, error", [
    ("grace", {"layer": 2, "lr": 1e30, "steps": 3}, "state:values"),          # extension: codebook values
    ("calinet", {"lr": 1e30, "steps": 3}, "state:"),                           # extension: added memory slots
    ("t-patcher", {"lr": 1e30, "steps": 3}, "state:"),                          # extension: patch neurons
    ("kn", {"lambda_add": 1e38}, "outputs"),                                    # parametric: finite but overflows
    ("nan_memory", {}, "memory[0]"),                                            # memory editor
    ("ft-l", {"lr": 1e38, "steps": 3}, "overflow"),                             # raises inside apply
])
def test_nan_in_every_editor_family_is_rolled_back(all_pm, editor, params, error):
    torch.manual_seed(0)
    m = tiny_model("gpt2", all_pm)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    with pytest.raises(Exception, match=error.replace("[", r"\[").replace("]", r"\]")) as info:
        m.edit(editor, default_requests()[:1], params)
    if error != "overflow":
        assert isinstance(info.value, EditFailedError) and "rolled back" in str(info.value)
    assert m.stack == [] and all(torch.equal(before[k], v) for k, v in m.model.state_dict().items())
    assert all(h._undo_callbacks == [] or not h.applied for h in m.stack)


# -- patches -------------------------------------------------------------------------------
@pytest.fixture
def patch_dir(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    reqs = default_requests()
    m.edit("toy_shift", reqs[:1], {"layer": 1})
    m.save_patch(str(tmp_path / "patch"))
    return tmp_path / "patch"


def test_a_nan_patch_is_refused_and_changes_nothing(pm, patch_dir):
    from safetensors.torch import load_file, save_file

    t = load_file(str(patch_dir / "deltas.safetensors"))
    next(iter(t.values())).view(-1)[3] = float("nan")
    save_file(t, str(patch_dir / "deltas.safetensors"))
    m = tiny_model("gpt2", pm)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    with pytest.raises(KmeError, match="NaN or inf; nothing was applied"):
        m.load_patch(str(patch_dir))
    assert m.stack == [] and all(torch.equal(before[k], v) for k, v in m.model.state_dict().items())


def test_patch_memory_of_the_wrong_shape_is_refused(pm, patch_dir):
    man = json.loads((patch_dir / "manifest.json").read_text())
    man["edits"][0]["memory"] = "x"
    (patch_dir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(KmeError, match=r"manifest.json: not a valid patch manifest: edits.0.memory"):
        tiny_model("gpt2", pm).load_patch(str(patch_dir))
    man["edits"][0]["memory"] = [{"a": 1}]
    (patch_dir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(KmeError, match=r"edits\[0\].memory: editor 'toy_shift' is parametric"):
        tiny_model("gpt2", pm).load_patch(str(patch_dir))


def test_a_grace_patch_for_a_layer_the_model_lacks_is_refused(all_pm, tmp_path):
    m = tiny_model("gpt2", all_pm)
    m.edit("grace", default_requests()[:1], {"layer": 2, "steps": 2})
    m.save_patch(str(tmp_path / "g"))
    man = json.loads((tmp_path / "g" / "manifest.json").read_text())
    man["edits"][0]["meta"]["grace"]["layer"] = 99
    (tmp_path / "g" / "manifest.json").write_text(json.dumps(man))
    fresh = tiny_model("gpt2", all_pm)
    with pytest.raises(KmeError, match=r"manifest.json: edits\[0\]: layer 99 does not exist"):
        fresh.load_patch(str(tmp_path / "g"))
    assert fresh.stack == []


def test_a_model_folder_holding_a_pickle_is_refused(kme_cli, tmp_path, model_dir, patch_dir):
    import pickle
    import shutil

    bad = tmp_path / "pickled"
    shutil.copytree(model_dir, bad)
    (bad / "model.safetensors").unlink()
    (bad / "pytorch_model.bin").write_bytes(pickle.dumps({"w": print}))
    r = kme_cli("patch", "apply", str(bad), str(patch_dir), "--save-model", str(tmp_path / "out"))
    _one_message(r, "pickle")
    assert not (tmp_path / "out").exists()


# -- plugins -------------------------------------------------------------------------------
class _EntryPoint:
    def __init__(self, name: str, exc: BaseException):
        self.name, self.exc, self.dist = name, exc, None

    def load(self):
        raise self.exc


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), ImportError("no module named x")])
def test_a_plugin_that_exits_or_is_interrupted_at_import_is_reported(monkeypatch, exc):
    import importlib_metadata

    monkeypatch.setattr(importlib_metadata, "entry_points", lambda group: [_EntryPoint("badplugin", exc)])
    pm = kme.build_plugin_manager()
    assert [(f.name, f.phase) for f in pm.failures] == [("badplugin", "import")]
    assert type(exc).__name__ in pm.failures[0].error
