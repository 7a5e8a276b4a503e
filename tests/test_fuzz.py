"""Property-based checks that bad input always ends the same way: exit code 2 and one message
naming the file and the field, never a traceback, nothing half-written.

Malformed pipelines (``kme validate``), dataset files in the published formats of CounterFact,
zsRE, MQuAKE and KnowEdit (``kme run``) and saved patches (``kme patch info|apply``) are
generated from a valid one by one mutation each, every mutation guaranteed to make it invalid.
CI runs a few hundred examples; ``pytest tests/test_fuzz.py --fuzz N`` runs N per property.
Set ``KME_FUZZ_REPORT=FILE`` to write the cases and outcomes per category (docs/robustness.md).
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import traceback
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "plugins" / "kme-datasets" / "tests" / "fixtures"
#: Examples per property in CI: pipelines, dataset files, patches.
CI_EXAMPLES = {"pipeline": 120, "dataset": 100, "patch": 60}
OUTCOMES: Counter[tuple[str, str, str]] = Counter()


def _settings(request: Any, kind: str) -> settings:
    n = request.config.getoption("--fuzz") or CI_EXAMPLES[kind]
    return settings(max_examples=n, deadline=None, derandomize=not request.config.getoption("--fuzz"),
                    suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def pm():
    import toyplugins

    import kme

    return kme.build_plugin_manager([toyplugins])


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    out = os.environ.get("KME_FUZZ_REPORT")
    if out:
        rows = [{"category": c, "mutation": k, "outcome": o, "cases": n} for (c, k, o), n in sorted(OUTCOMES.items())]
        Path(out).write_text(json.dumps(rows, indent=2))


def kme(pm: Any, *args: str) -> tuple[int, str]:
    """``kme ARGS`` in-process: (exit code, stderr); an escaping exception is a test failure
    with its traceback, never swallowed."""
    from kme import cli

    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(list(args), pm=pm)
    except BaseException:  # noqa: BLE001 - exactly what must not happen
        pytest.fail(f"kme {' '.join(args)} raised:\n{traceback.format_exc()}")
    return code, err.getvalue()


_PROGRESS_BAR = re.compile(r"\r.*\d+%\|.*\]")


def check(category: str, kind: str, code: int, err: str, names: list[Any]) -> None:
    """The one acceptable outcome of bad input (``names``: strings the message must hold; a
    tuple: one of them). A progress bar drawn before the error (transformers' "Loading
    weights", on when an earlier test left it on) is not part of the message."""
    err = "\n".join(line for line in err.split("\n") if not _PROGRESS_BAR.search(line))
    ok = (code == 2 and err.startswith("error: ") and "Traceback" not in err
          and len(err.strip().splitlines()) <= 2
          and all(any(x in err for x in ((n,) if isinstance(n, str) else n)) for n in names))
    outcome = "exit 2, one message naming file and field" if ok else f"WRONG (exit {code})"
    OUTCOMES[(category, kind.split(":")[0] if category == "pipeline" else kind, outcome)] += 1
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) <= 2, err  # the message and at most a hint
    for n in names:  # a tuple: any one of them
        assert any(x in err for x in ((n,) if isinstance(n, str) else n)), f"{n!r} not named in: {err}"


# -- pipelines -------------------------------------------------------------------------------
BASE: dict[str, Any] = {
    "model": "tiny",
    "dataset": {"name": "toy", "limit": 3},
    "editors": [{"name": "toy_shift", "params": {"scale": 0.5}}],
    "metrics": ["toy_logprob"],
    "protocol": {"mode": "batch", "batch_size": 1},
    "seed": 0,
}
_ident = st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True)
_junk = st.one_of(st.integers(-5, 5), st.lists(st.integers(), max_size=2), st.none(), st.booleans(),
                  st.dictionaries(_ident, st.integers(), max_size=2))
_not_int = st.one_of(st.booleans(), st.floats(allow_nan=True).filter(lambda f: f != int(f) if f == f and abs(f) < 1e300
                                                                      else True),
                     st.text(max_size=8), st.lists(st.integers(), max_size=2), st.none())


def _set(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    cur: Any = d
    for k in keys[:-1]:
        if isinstance(cur.get(k) if isinstance(cur, dict) else cur[k], str):  # bare name -> mapping
            cur[k] = {"name": cur[k]}
        cur = cur[k]
    cur[keys[-1]] = value
    return d


@st.composite
def bad_pipelines(draw: Any) -> tuple[str, bytes, list[str]]:
    """(mutation, file bytes, what the message must name)."""
    kind = draw(st.sampled_from(["value", "unknown_key", "yaml11", "duplicate", "tag", "encoding", "deep",
                                 "alias_bomb", "syntax"]))
    dump = lambda d: yaml.safe_dump(d, sort_keys=False).encode()  # noqa: E731
    if kind == "value":
        path, value, names = draw(st.one_of(
            st.tuples(st.just("model"), st.one_of(_junk.filter(lambda v: not isinstance(v, dict)), st.just(""),
                                                   st.just("  ")), st.just(["model"])),
            st.tuples(st.just("model.device"), st.text(max_size=12).filter(
                lambda s: not re.fullmatch(r"cpu|cuda(:[0-9]{1,3})?|mps", s)), st.just(["model.device"])),
            st.tuples(st.just("dataset"), _junk.filter(lambda v: not isinstance(v, dict)), st.just(["dataset"])),
            st.tuples(st.just("dataset.name"), _ident.filter(lambda s: s != "toy"), st.just(["dataset.name"])),
            st.tuples(st.just("editors"), _junk.filter(lambda v: not isinstance(v, list) or v), st.just(["editors"])),
            st.tuples(st.just("editors.0.name"), _ident.filter(lambda s: not s.startswith("toy")),
                      st.just(["editors[0].name"])),
            st.tuples(st.just("editors.0.params.scale"), st.one_of(st.text(max_size=6).filter(_not_float),
                                                                    st.lists(st.integers(), max_size=2), st.none()),
                      st.just(["editors[0].params", "scale"])),
            st.tuples(st.just("metrics"), st.one_of(st.just([]), st.just(["toy_logprob", "toy_logprob"]),
                                                    st.lists(_ident.filter(lambda s: not s.startswith("toy")),
                                                             min_size=1, max_size=3)), st.just(["metrics"])),
            st.tuples(st.just("protocol.batch_size"), st.one_of(_not_int, st.integers(max_value=0)),
                      st.just(["protocol.batch_size"])),
            st.tuples(st.just("protocol.mode"), st.text(max_size=10).filter(lambda s: s not in ("batch", "sequential")),
                      st.just(["protocol.mode"])),
            st.tuples(st.just("seed"), st.one_of(_not_int, st.integers(max_value=-1), st.integers(min_value=2**63)),
                      st.just(["seed"])),
        ))
        return f"value:{path}", dump(_set(BASE, path, value)), names
    if kind == "unknown_key":
        where = draw(st.sampled_from(["", "protocol.", "editors.0.params.", "dataset."]))
        key = draw(_ident.filter(lambda k: k not in ("name", "limit", "mode", "scale", "params", "preset",
                                                     "layer", "make_nan", "broken")))
        value = draw(_junk)
        return "unknown key", dump(_set(BASE, where + key, value)), [key]
    if kind == "yaml11":  # YAML 1.1 spellings an int field must not read as 1, 0 or 90
        word = draw(st.sampled_from(["yes", "no", "on", "off", "y", "n", "1:30", "0b11", "1_000", "true"]))
        text = dump(BASE).decode().replace("batch_size: 1", f"batch_size: {word}")
        return "yaml 1.1 scalar", text.encode(), ["protocol.batch_size"]
    if kind == "duplicate":
        key = draw(st.sampled_from(list(BASE)))
        return "duplicate key", dump(BASE) + dump({key: BASE[key]}), [f"key {key!r} is given twice"]
    if kind == "tag":
        tag = draw(st.sampled_from(["!!int 'abc'", "!!float x", "!!binary '%'", "!!python/object:os.system x",
                                    "!!python/name:os.system ''", "!!timestamp nope", "!!bool maybe", "!foo bar"]))
        return "bad tag", dump(BASE).decode().replace("model: tiny", f"model: {tag}").encode(), [("line 1", "model")]
    if kind == "encoding":
        text = dump(BASE).decode() + "# caf\u00e9 \u00fcber\n"
        enc = draw(st.sampled_from(["latin-1", "utf-16", "binary"]))
        data = draw(st.binary(min_size=8, max_size=64)).replace(b"\x00", b"\xff") + b"\xff\x00" \
            if enc == "binary" else text.encode(enc)
        return f"encoding:{enc}", data, ["not UTF-8"]
    if kind == "deep":
        n = draw(st.integers(101, 5000))
        return "deep nesting", dump(BASE).decode().replace("scale: 0.5", "scale: " + "[" * n + "]" * n).encode(), \
            ["nested"]
    if kind == "alias_bomb":
        lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]" for i in range(8)]
        return "alias bomb", (dump(BASE).decode() + "\n".join(lines) + "\n").encode(), ["expands"]
    text = dump(BASE).decode()
    cut = draw(st.sampled_from(["dataset: {name: toy\n", "metrics: [toy_logprob\n", "  - : :\n\t", "model: 'x\n"]))
    return "yaml syntax", (text + cut).encode(), ["malformed YAML"]


def _not_float(s: str) -> bool:
    try:
        float(s)
        return False
    except ValueError:
        return True


def test_malformed_pipelines_exit_2_naming_file_and_field(pm, tmp_path_factory, request):
    @_settings(request, "pipeline")
    @given(bad_pipelines())
    def prop(case: tuple[str, bytes, list[str]]) -> None:
        kind, data, names = case
        d = tmp_path_factory.mktemp("pipe")
        p = d / "pipe.yaml"
        p.write_bytes(data)
        code, err = kme(pm, "validate", str(p))
        check("pipeline", kind, code, err, [str(p), *names])
        assert [f.name for f in d.iterdir()] == ["pipe.yaml"]  # validate writes nothing

    prop()


# -- dataset files ---------------------------------------------------------------------------
#: (dataset, fixture, options, record paths every one of which the loader needs)
DATASETS = [
    ("counterfact", "counterfact.json", {}, [
        ("requested_rewrite",), ("requested_rewrite", "prompt"), ("requested_rewrite", "subject"),
        ("requested_rewrite", "target_new"), ("requested_rewrite", "target_new", "str")]),
    ("zsre", "zsre_mend_eval.json", {}, [("subject",), ("src",), ("alt",), ("rephrase",), ("loc",), ("loc_ans",)]),
    ("mquake", "MQuAKE-CF-3k-v2.json", {}, [
        ("requested_rewrite",), ("requested_rewrite", 0, "prompt"), ("requested_rewrite", 0, "subject"),
        ("requested_rewrite", 0, "target_new"), ("questions",), ("new_answer",)]),
    ("knowedit", "knowedit/wiki_counterfact/test_cf.json", {"subset": "wiki_counterfact"}, [
        ("subject",), ("prompt",), ("target_new",)]),
]


def _mutate(rec: Any, path: tuple[Any, ...], value: Any) -> Any:
    rec = copy.deepcopy(rec)
    cur = rec
    for k in path[:-1]:
        cur = cur[k]
    if value is _DELETE:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return rec


_DELETE = object()


@st.composite
def bad_dataset_files(draw: Any) -> tuple[str, str, dict[str, Any], bytes, list[str]]:
    name, fixture, options, required = draw(st.sampled_from(DATASETS))
    records = json.loads((FIXTURES / fixture).read_text(encoding="utf-8"))[:2]
    kind = draw(st.sampled_from(["delete", "wrong_type", "huge", "top_level", "truncated", "encoding", "deep"]))
    i = draw(st.integers(0, len(records) - 1))
    if kind in ("delete", "wrong_type", "huge"):
        path = draw(st.sampled_from(required))
        if kind == "delete":
            value: Any = _DELETE
        elif kind == "wrong_type":
            value = draw(st.one_of(st.integers(), st.none(), st.booleans(), st.just(""), st.just("   "),
                                   st.lists(st.integers(), min_size=1, max_size=2),
                                   st.dictionaries(st.just("zz"), st.integers(), min_size=1)))
        else:  # a text field of over a million characters
            path = draw(st.sampled_from([p for p in required if isinstance(_get(records[i], p), str)]))
            value = "x " * 600_000 + _get(records[i], path)
        records[i] = _mutate(records[i], path, value)
        key = str([k for k in path if isinstance(k, str)][-1])
        names = [f"record {i}", key] if kind != "huge" else [("characters", key)]
        return f"{name}:{kind}", name, options, json.dumps(records).encode(), names
    if kind == "top_level":
        value = draw(st.one_of(st.integers(), st.text(max_size=5), st.dictionaries(st.just("a"), st.integers(),
                                                                                      min_size=1)))
        return f"{name}:top level", name, options, json.dumps(value).encode(), []
    text = json.dumps(records, indent=1)
    if kind == "truncated":
        cut = draw(st.integers(1, len(text.rstrip()) - 1))
        return f"{name}:truncated", name, options, text[:cut].encode(), []
    if kind == "encoding":
        enc = draw(st.sampled_from(["latin-1", "utf-16"]))
        return f"{name}:encoding", name, options, text.replace('"', '"\u00e9', 1).encode(enc) if enc == "latin-1" \
            else text.encode(enc), ["not UTF-8"]
    n = draw(st.integers(101, 20_000))
    return f"{name}:deep", name, options, ("[" * n + "]" * n).encode(), ["nested"]


def _get(rec: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        rec = rec[k]
    return rec


def test_malformed_dataset_files_exit_2_naming_file_and_field(pm, tmp_path_factory, request):
    @_settings(request, "dataset")
    @given(bad_dataset_files())
    def prop(case: tuple[str, str, dict[str, Any], bytes, list[str]]) -> None:
        kind, name, options, data, names = case
        d = tmp_path_factory.mktemp("data")
        f = d / "records.json"
        f.write_bytes(data)
        spec = {"model": str(d / "no-model"), "dataset": {"name": name, "path": str(f), "on_unusable": "error",
                                                          **options},
                "editors": ["toy_shift"], "metrics": ["toy_logprob"], "output": str(d / "run")}
        p = d / "pipe.yaml"
        p.write_text(yaml.safe_dump(spec))
        code, err = kme(pm, "run", str(p), "--no-progress")
        check("dataset", kind, code, err, [str(f), *names])
        assert not (d / "run" / "edits.jsonl").exists() and not (d / "run" / "summary.json").exists()

    prop()


# -- patches ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_patch(pm, tmp_path_factory) -> tuple[str, Path]:
    import toyplugins

    from kme.models.loading import load_model

    model_dir = toyplugins.save_tiny(tmp_path_factory.mktemp("tiny"))
    m = load_model(model_dir, pm)
    reqs = toyplugins.ToyDataset().load()
    m.edit("toy_shift", reqs[:2], {"layer": 1})
    m.edit("toy_memory", reqs[2:3])
    out = tmp_path_factory.mktemp("patch") / "good"
    m.save_patch(str(out))
    return model_dir, out


@st.composite
def bad_patches(draw: Any) -> tuple[str, Any, list[str], bool]:
    """(mutation, function(patch_dir) that damages a copy, what the message names, needs the model)."""
    kind = draw(st.sampled_from(["manifest_type", "manifest_delete", "manifest_value", "manifest_text",
                                 "tensors", "nan", "shape", "unknown_param", "memory_on_parametric"]))

    def edit_manifest(fn: Any) -> Any:
        def go(d: Path) -> None:
            m = json.loads((d / "manifest.json").read_text())
            (d / "manifest.json").write_text(json.dumps(fn(m)))
        return go

    if kind == "manifest_type":
        v = draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=5), st.none()))
        return "manifest not an object", edit_manifest(lambda m: v), ["manifest.json"], False
    if kind == "manifest_delete":
        path = draw(st.sampled_from([("kme_patch_version",), ("base_model",), ("edits",), ("base_model", "fingerprint"),
                                     ("base_model", "source"), ("edits", 0, "editor"), ("edits", 1, "editor")]))
        return "manifest field missing", edit_manifest(lambda m: _mutate(m, path, _DELETE)), \
            ["manifest.json", str(path[-1])], False
    if kind == "manifest_value":
        path = draw(st.sampled_from([("base_model",), ("edits",), ("edits", 0, "requests"), ("edits", 0, "deltas"),
                                     ("edits", 1, "memory"), ("edits", 0, "state"), ("edits", 0, "params"),
                                     ("base_model", "fingerprint")]))
        v = draw(st.one_of(st.integers(), st.just("x"), st.none(), st.lists(st.integers(), min_size=1, max_size=2)))
        if path[-1] in ("deltas", "state") and isinstance(v, list):
            v = "x"
        return "manifest field wrong type", edit_manifest(lambda m: _mutate(m, path, v)), \
            ["manifest.json", str(path[-1])], False
    if kind == "manifest_text":
        how = draw(st.sampled_from(["truncated", "latin-1", "deep", "empty"]))

        def go(d: Path) -> None:
            t = (d / "manifest.json").read_text()
            data = {"truncated": t[: len(t) // 2].encode(), "latin-1": t.replace('"', '"\u00e9', 1).encode("latin-1"),
                    "deep": ("[" * 3000 + "]" * 3000).encode(), "empty": b""}[how]
            (d / "manifest.json").write_bytes(data)
        return f"manifest {how}", go, ["manifest.json"], False
    if kind == "tensors":
        how = draw(st.sampled_from(["truncated", "empty", "random", "missing"]))
        cut = draw(st.floats(0.05, 0.95))
        junk = draw(st.binary(min_size=1, max_size=256))

        def go(d: Path) -> None:
            f = d / "deltas.safetensors"
            if how == "missing":
                f.unlink()
                return
            data = f.read_bytes()
            f.write_bytes({"truncated": data[: int(len(data) * cut)], "empty": b"", "random": junk}[how])
        return f"deltas.safetensors {how}", go, ["deltas.safetensors"], False

    def edit_tensors(fn: Any, manifest_fn: Any = None) -> Any:
        def go(d: Path) -> None:
            from safetensors.torch import load_file, save_file

            t = load_file(str(d / "deltas.safetensors"))
            fn(t)
            save_file(t, str(d / "deltas.safetensors"))
            if manifest_fn is not None:
                edit_manifest(manifest_fn)(d)
        return go

    if kind == "nan":
        value = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))

        def poison(t: dict) -> None:
            k = sorted(t)[0]
            t[k].view(-1)[0] = value
        return "NaN/inf delta", edit_tensors(poison), ["NaN or inf"], False
    if kind == "shape":
        import torch

        def reshape(t: dict) -> None:
            k = sorted(t)[0]
            t[k] = torch.zeros(t[k].shape[0] + 1, 2)
        return "delta of the wrong shape", edit_tensors(reshape), ["manifest.json", "shape"], True
    if kind == "unknown_param":
        bogus = draw(_ident)

        def rename(t: dict) -> None:
            k = sorted(t)[0]
            t["0/delta/" + bogus] = t.pop(k)
        return "delta for a parameter the base lacks", edit_tensors(rename, lambda m: _mutate(m, ("edits", 0, "deltas"),
                                                                                              [bogus])), \
            ["manifest.json", "no parameter"], True
    v = draw(st.sampled_from(["x", [{"a": 1}], [1, 2]]))
    return "memory on a parametric edit", edit_manifest(lambda m: _mutate(m, ("edits", 0, "memory"), v)), \
        ["manifest.json", "memory"], True


def test_malformed_patches_exit_2_and_change_nothing(pm, good_patch, tmp_path_factory, request):
    model_dir, good = good_patch

    @_settings(request, "patch")
    @given(bad_patches())
    def prop(case: tuple[str, Any, list[str], bool]) -> None:
        kind, damage, names, needs_model = case
        d = tmp_path_factory.mktemp("bad") / "patch"
        shutil.copytree(good, d)
        damage(d)
        if not needs_model:
            code, err = kme(pm, "patch", "info", str(d))
            check("patch", f"info: {kind}", code, err, names)
        out = d.parent / "patched"
        code, err = kme(pm, "patch", "apply", model_dir, str(d), "--save-model", str(out))
        check("patch", f"apply: {kind}", code, err, names)
        assert not out.exists()  # nothing written

    prop()
