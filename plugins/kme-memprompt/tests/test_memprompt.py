"""MemPrompt meets the editor contract; feedback applies to queries similar to the question it
corrects, not to others; items are added, listed and removed in a saved patch without
retraining."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import kme
from kme.cli import make_cli
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_memlib.textmemory import add_item, list_items, remove_item


class TestMemPromptConformance(EditorConformance):
    editor_name = "memprompt"


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def test_feedback_applies_above_the_threshold_only(pm):
    m = tiny_model("gpt2", pm)
    m.edit("memprompt", default_requests())
    ctx = m.memory_contexts(["Bob Jones speaks", "The capital of France is", "0 1 2 3"])
    assert ctx[0] == "Note: Bob Jones speaks Italian.\n"
    assert ctx[1] == "Note: The capital of France is Rome.\n"
    assert ctx[2] == ""  # nothing similar enough in memory


def test_threshold_and_template_params(pm):
    m = tiny_model("gpt2", pm)
    m.edit("memprompt", default_requests()[:1], {"threshold": 1.0, "template": "Feedback: {feedback} ({question})\n"})
    assert m.memory_contexts(["The capital of France is"]) == \
        ["Feedback: The capital of France is Rome. (The capital of France is)\n"]
    assert m.memory_contexts(["The capital of France was"]) == [""]


def test_items_can_be_added_and_removed_on_a_model(pm):
    m = tiny_model("gpt2", pm)
    item = add_item(m, "memprompt", {"question": "What does Bob Jones speak?", "feedback": "Bob speaks Italian."})
    assert [it["id"] for it in list_items(m, "memprompt")] == [item["id"]]
    assert m.memory_contexts(["What does Bob Jones speak?"]) == ["Note: Bob speaks Italian.\n"]
    remove_item(m, "memprompt", item["id"])
    assert m.memory_contexts(["What does Bob Jones speak?"]) == [""]
    with pytest.raises(kme.KmeError, match="no memprompt item with id 'nope'"):
        remove_item(m, "memprompt", "nope")
    with pytest.raises(kme.KmeError, match="lacks feedback"):
        add_item(m, "memprompt", {"question": "q?", "feedback": " "})


def test_cli_add_list_remove(pm, tmp_path):
    base = tmp_path / "base"
    tiny_model("gpt2", pm).model.save_pretrained(str(base))
    from kme.testing import tiny_tokenizer

    tiny_tokenizer().save_pretrained(str(base))
    cli = make_cli(pm)
    pm.hook.kme_register_commands(cli=cli)
    run = CliRunner().invoke
    patch = str(tmp_path / "patch")
    r = run(cli, ["memprompt", "add", patch, "--model", str(base), "--id", "f1", "--question", "Where is Paris?",
                  "--feedback", "Paris is in France."], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = run(cli, ["memprompt", "add", patch, "--model", str(base), "--id", "f2", "--question", "Who is Bob?",
                  "--feedback", "Bob is a musician."], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = run(cli, ["memprompt", "list", patch, "--json"])
    assert [it["id"] for it in json.loads(r.stdout)] == ["f1", "f2"]
    r = run(cli, ["memprompt", "remove", patch, "f1", "--model", str(base)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = run(cli, ["memprompt", "list", patch])
    assert "f2" in r.output and "f1" not in r.output
    m = kme.load_model(str(base), pm)
    m.load_patch(patch)
    assert m.memory_contexts(["Who is Bob?"]) == ["Note: Bob is a musician.\n"]
