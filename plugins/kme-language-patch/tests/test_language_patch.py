"""Language Patch meets the editor contract; a patch applies exactly when its gate opens;
patches are added, listed and removed in a saved patch folder without retraining."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import kme
from kme.cli import make_cli
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model, tiny_tokenizer

from kme_memlib.textmemory import add_item
from kme_language_patch.editor import _mentions


class TestLanguagePatchConformance(EditorConformance):
    editor_name = "language-patch"


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def test_mention_gate():
    assert _mentions("Where was Alice Smith born?", "Alice Smith")
    assert _mentions("alice  smith's birthplace is", "Alice Smith")
    assert not _mentions("Alice Smithson was born in", "Alice Smith")
    assert not _mentions("Bob Jones speaks", "Alice Smith")


def test_patch_applies_when_its_condition_holds(pm):
    m = tiny_model("gpt2", pm)
    m.edit("language-patch", default_requests())
    ctx = m.memory_contexts(["The birthplace of Alice Smith is", "Alice Smith works for", "Carol White was born in"])
    # paraphrases and other relations of the subject get the patch; other subjects do not
    assert ctx[0] == ctx[1] == "Note: Alice Smith was born in Paris.\n"
    assert ctx[2] == ""


def test_similarity_gate_and_several_patches(pm):
    m = tiny_model("gpt2", pm)
    m.edit("language-patch", default_requests(), {"gate": "similarity", "threshold": 0.05, "max_items": 2})
    add_item(m, "language-patch", {"condition": "Bob Jones", "consequence": "Bob Jones is a drummer."})
    ctx = m.memory_contexts(["Bob Jones"])[0]
    assert ctx.count("Note:") == 2 and "Bob Jones speaks Italian." in ctx and "drummer" in ctx


def test_cli_manages_patches(pm, tmp_path):
    base = tmp_path / "base"
    tiny_model("gpt2", pm).model.save_pretrained(str(base))
    tiny_tokenizer().save_pretrained(str(base))
    m = kme.load_model(str(base), pm)
    m.edit("language-patch", default_requests()[:1])
    patch = str(tmp_path / "patch")
    m.save_patch(patch)
    cli = make_cli(pm)
    pm.hook.kme_register_commands(cli=cli)
    run = CliRunner().invoke
    r = run(cli, ["language-patch", "add", patch, "--model", str(base), "--id", "p2", "--condition", "Bob Jones",
                  "--consequence", "Bob Jones plays the drums."], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    items = json.loads(run(cli, ["language-patch", "list", patch, "--json"]).stdout)
    assert [it["condition"] for it in items] == ["France", "Bob Jones"]
    first = items[0]["id"]
    assert run(cli, ["language-patch", "remove", patch, first, "--model", str(base)]).exit_code == 0
    m2 = kme.load_model(str(base), pm)
    m2.load_patch(patch)
    assert m2.memory_contexts(["The capital of France is", "Bob Jones plays"]) == \
        ["", "Note: Bob Jones plays the drums.\n"]
    r = run(cli, ["language-patch", "list", str(tmp_path / "missing")])
    assert isinstance(r.exception, kme.KmeError) and "no manifest.json" in str(r.exception)
