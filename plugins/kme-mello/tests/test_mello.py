"""MeLLo meets the editor contract; its loop answers each hop, revises an answer the retrieved
edited fact contradicts and carries it into the next hop, with rule-based and prompted
decomposition; scripted language models make the loop's decisions checkable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_mello.rules import rules_from_world
from kme_mello.solver import Rule, first_span, match_rule, solve_prompted, solve_with_rules

RULES = [Rule(question="The currency of the city where {} was born is the",
              hops=["{} was born in", "The currency of {} is the"])]
RULES_FILE = Path(__file__).parent / "data" / "rules.json"  # the same rule, as a file


class TestMelloConformance(EditorConformance):
    editor_name = "mello"
    params = {"decomposer": "rules", "rules_file": str(RULES_FILE), "answer_tokens": 3}


class ScriptedLM:
    """Continuations looked up by the end of the text; a stated fact wins when it is about the
    asked subject (what a model that reads its context does)."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, texts, n):
        out = []
        for t in texts:
            self.calls.append(t)
            query = t.split("Prompt: ")[-1]
            if "New Fact: " in t:
                fact = t.split("New Fact: ")[1].split("\n")[0]
                if fact.startswith(query):
                    out.append(fact[len(query):] + ".")
                    continue
            out.append(self.answers.get(query, " unknown."))
        return out


BASE = {"Ann Lee was born in": " Oldtown. She", "The currency of Oldtown is the": " florin.",
        "The currency of Newtown is the": " crown.", "Bo Kim was born in": " Midtown."}


def test_rules_file_holds_the_rule():
    assert [Rule.model_validate(r) for r in json.loads(RULES_FILE.read_text())] == RULES


def test_match_rule_and_first_span():
    assert match_rule("The currency of the city where Ann Lee was born is the", RULES) == \
        ("Ann Lee", RULES[0].hops)
    assert match_rule("Ann Lee was born in", RULES) is None
    assert first_span(" Aldanton Haven. The rest") == "Aldanton Haven"


def test_rules_revise_a_contradicted_hop_and_carry_it_on():
    lm = ScriptedLM(BASE)
    facts = {"Ann Lee was born in": "Ann Lee was born in Newtown"}
    traces = solve_with_rules(["The currency of the city where Ann Lee was born is the"], RULES, lm,
                              lambda qs: [facts.get(q, "Bo Kim was born in Farview") for q in qs])
    t = traces[0]
    assert t.answer == "crown" and t.revised
    assert [s["answer"] for s in t.steps] == ["Newtown", "crown"]
    assert t.steps[0]["generated"] == "Oldtown" and t.steps[0]["contradicts"]
    assert not t.steps[1]["contradicts"]  # the retrieved fact is about someone else


def test_rules_keep_answers_no_fact_contradicts():
    lm = ScriptedLM(BASE)
    traces = solve_with_rules(["The currency of the city where Ann Lee was born is the", "Bo Kim was born in"],
                              RULES, lm, lambda qs: ["Cy Dee was born in Newtown" for _ in qs])
    assert [(t.answer, t.revised) for t in traces] == [("florin", False), ("Midtown", False)]


def test_prompted_decomposition_follows_the_transcript():
    script = iter([
        "Subquestion: Where was Ann Lee born?\nGenerated answer: Ann Lee was born in Oldtown.\nRetrieved fact:",
        "Retrieved fact contradicts to generated answer, so the intermediate answer is: Newtown\n"
        "Subquestion: What is the currency of Newtown?\nGenerated answer: The currency of Newtown is the crown.\n"
        "Retrieved fact:",
        "Retrieved fact does not contradict to generated answer, so the intermediate answer is: crown\n"
        "Final answer: crown\n\nQuestion: something else",
    ])
    seen = []

    def lm(texts, n):
        seen.extend(texts)
        return [next(script) for _ in texts]

    facts = iter(["Ann Lee was born in Newtown", "The currency of Newtown is the crown"])
    traces = solve_prompted(["What is the currency of Ann Lee's home town?"], "EXAMPLES\n\n", lm,
                            lambda qs: [next(facts) for _ in qs])
    t = traces[0]
    assert t.answer == "crown" and t.revised
    assert [s["subquestion"] for s in t.steps] == ["Where was Ann Lee born?", "What is the currency of Newtown?"]
    assert [s["answer"] for s in t.steps] == ["Newtown", "crown"]
    assert "Retrieved fact: Ann Lee was born in Newtown.\n" in seen[1]
    assert t.transcript.endswith("Final answer: crown")


def test_prompted_stops_when_the_model_leaves_the_format():
    traces = solve_prompted(["Q?"], "", lambda texts, n: ["blah blah" for _ in texts], lambda qs: [None] * len(qs))
    assert traces[0].answer == "" and not traces[0].revised


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def test_editor_states_the_revised_answer_before_the_query(pm, monkeypatch):
    m = tiny_model("gpt2", pm)
    lm = ScriptedLM(BASE)
    monkeypatch.setattr(m, "generate", lambda texts, max_new_tokens=20, use_memory=True: lm(texts, max_new_tokens))
    req = kme.EditRequest(case_id=1, prompt="{} was born in", subject="Ann Lee", target_new="Newtown")
    m.edit("mello", [req], {"decomposer": "rules", "rules_file": str(RULES_FILE)})
    q = "The currency of the city where Ann Lee was born is the"
    ctx = m.memory_contexts([q, "Bo Kim was born in", "Ann Lee was born in"])
    assert ctx == [f"New Fact: {q} crown\nPrompt: ", "", "New Fact: Ann Lee was born in Newtown\nPrompt: "]
    n_calls = len(lm.calls)
    m.memory_contexts([q])  # solved once per model state
    assert len(lm.calls) == n_calls


def test_prompted_editor_runs_on_a_small_context_model(pm):
    m = tiny_model("gpt2", pm)  # 128 positions: the few-shot transcript is cut from the left
    m.edit("mello", default_requests()[:1], {"step_tokens": 8, "max_hops": 1})
    assert len(m.memory_contexts(["The capital of France is"])) == 1


def test_rules_from_a_fact_world(tmp_path):
    world = {"relations": {"birthplace": {"templates": ["{} was born in"]},
                           "currency": {"templates": ["The currency of {} is the"]}},
             "multihop": {"birthplace": [{"template": "The currency of the city where {} was born is the",
                                          "path": ["currency"]}]}}
    assert rules_from_world(world) == RULES
    with pytest.raises(kme.KmeError, match="not a fact-world description"):
        rules_from_world({"multihop": {}})


def test_bad_rules_file_is_a_clear_error(pm, tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps([{"question": "no slot", "hops": ["{} x"]}]))
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.KmeError, match="rule 0"):
        m.edit("mello", default_requests()[:1], {"decomposer": "rules", "rules_file": str(bad)})
    with pytest.raises(kme.KmeError, match="needs rules_file"):
        m.edit("mello", default_requests()[:1], {"decomposer": "rules"})


def test_min_similarity_hides_unrelated_facts(pm, monkeypatch):
    m = tiny_model("gpt2", pm)

    class Gullible(ScriptedLM):  # copies any stated fact, whoever it is about
        def __call__(self, texts, n):
            return [" " + t.split("New Fact: ")[1].split(" in ")[1].split("\n")[0] + "." if "New Fact: " in t
                    else self.answers.get(t, " unknown.") for t in texts]

    lm = Gullible(BASE)
    monkeypatch.setattr(m, "generate", lambda texts, max_new_tokens=20, use_memory=True: lm(texts, max_new_tokens))
    req = kme.EditRequest(case_id=1, prompt="{} was born in", subject="Ann Lee", target_new="Newtown")
    h = m.edit("mello", [req], {"decomposer": "rules", "rules_file": str(RULES_FILE)})
    assert m.memory_contexts(["Bo Kim was born in"]) != [""]  # the nearest fact is always shown
    m.undo(h)
    m.edit("mello", [req], {"decomposer": "rules", "rules_file": str(RULES_FILE), "min_similarity": 0.8})
    assert m.memory_contexts(["Bo Kim was born in", "Ann Lee was born in"]) == \
        ["", "New Fact: Ann Lee was born in Newtown\nPrompt: "]
