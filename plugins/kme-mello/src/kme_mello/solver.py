"""MeLLo's loop: decompose a question into sub-questions, answer each with the language model,
check the answer against the edited fact retrieved for the sub-question, revise it on a
contradiction, and carry the (revised) answer into the next hop.

Two ways to decompose, both driven by the same language model:

* :func:`solve_prompted` -- the paper's procedure. The model continues a few-shot transcript
  (``Question`` / ``Subquestion`` / ``Generated answer``); generation stops where the
  transcript asks for a ``Retrieved fact``, the retrieved edited fact is inserted, and the
  model itself writes whether it contradicts the generated answer and the intermediate
  answer, then the next sub-question or the ``Final answer``. This needs a model that can
  follow such a transcript.
* :func:`solve_with_rules` -- the decomposition comes from rules that map a question template
  to its chain of single-hop templates (for worlds whose question templates are known, such
  as kme's fact world). Each hop is answered by the model's completion of the hop prompt;
  the contradiction check is also the model's: it answers the hop again with the retrieved
  fact stated before it, and a different answer is a contradiction.

Both work in batches across questions, through two callables so they can be tested without a
model: ``generate(texts, max_new_tokens) -> continuations`` and ``retrieve(queries) -> facts``
(``None`` when the memory is empty).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Trace", "Rule", "match_rule", "first_span", "solve_with_rules", "solve_prompted", "FACT_CONTEXT"]

Generate = Callable[[list[str], int], list[str]]
Retrieve = Callable[[list[str]], list["str | None"]]

FACT_CONTEXT = "New Fact: {fact}\nPrompt: "


@dataclass
class Trace:
    """What MeLLo did for one question."""

    question: str
    answer: str = ""
    revised: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    transcript: str = ""


class Rule(BaseModel):
    """A multi-hop question template and its single-hop templates, each with one ``{}`` slot:
    the first hop's slot takes the question's subject, later hops the previous answer."""

    model_config = ConfigDict(extra="forbid")
    question: str
    hops: list[str]


def _pattern(template: str) -> re.Pattern[str]:
    head, _, tail = template.partition("{}")
    return re.compile("^" + re.escape(head) + r"(?P<s>.+?)" + re.escape(tail) + r"\s*$")


def match_rule(question: str, rules: list[Rule]) -> tuple[str, list[str]] | None:
    """The subject and hop templates of the first rule whose template matches ``question``."""
    for r in rules:
        m = _pattern(r.question).match(question)
        if m:
            return m.group("s"), r.hops
    return None


_SPAN_END = re.compile(r"[.\n,;!?]")


def first_span(text: str) -> str:
    """The answer at the start of a continuation: up to the first sentence or clause end."""
    return _SPAN_END.split(text.strip(), maxsplit=1)[0].strip()


def solve_with_rules(questions: list[str], rules: list[Rule], generate: Generate, retrieve: Retrieve, *,
                     max_hops: int = 4, answer_tokens: int = 8, fact_context: str = FACT_CONTEXT) -> list[Trace]:
    """MeLLo with rule-based decomposition (a question no rule matches is one hop: itself)."""
    traces = [Trace(q) for q in questions]
    plans: list[tuple[str | None, list[str]]] = []
    for q in questions:
        m = match_rule(q, rules)
        plans.append(m if m else (None, [q]))
    entity: list[str | None] = [s for s, _ in plans]
    for hop in range(max_hops):
        active = [i for i, (_, hops) in enumerate(plans) if hop < len(hops) and (hop == 0 or entity[i])]
        if not active:
            break
        subqs = []
        for i in active:
            tmpl = plans[i][1][hop]
            subqs.append(tmpl.format(entity[i]) if "{}" in tmpl and entity[i] is not None else tmpl)
        generated = [first_span(c) for c in generate(subqs, answer_tokens)]
        facts = retrieve(subqs)
        checked_idx = [n for n, f in enumerate(facts) if f]
        rechecked = generate([fact_context.format(fact=facts[n]) + subqs[n] for n in checked_idx], answer_tokens) \
            if checked_idx else []
        with_fact = {n: first_span(c) for n, c in zip(checked_idx, rechecked)}
        for n, i in enumerate(active):
            alt = with_fact.get(n)
            contradicts = bool(alt) and alt != generated[n]
            answer = alt if contradicts else generated[n]
            traces[i].steps.append({"subquestion": subqs[n], "generated": generated[n], "fact": facts[n],
                                    "contradicts": contradicts, "answer": answer})
            traces[i].revised |= contradicts
            entity[i] = answer
    for i, t in enumerate(traces):
        t.answer = entity[i] or ""
    return traces


_SUBQ = re.compile(r"Subquestion:\s*(.+)")
_INTERMEDIATE = re.compile(r"intermediate answer is:\s*(.+)")
_FINAL = re.compile(r"Final answer:\s*(.+)")


def solve_prompted(questions: list[str], prompt: str, generate: Generate, retrieve: Retrieve, *,
                   max_hops: int = 4, step_tokens: int = 48) -> list[Trace]:
    """MeLLo as in the paper: the model continues a few-shot transcript; the system inserts a
    retrieved fact after every generated answer and stops at the final answer."""
    traces = [Trace(q, transcript=f"{prompt}Question: {q}\n") for q in questions]
    open_ = list(range(len(questions)))
    for _ in range(max_hops + 1):
        if not open_:
            break
        conts = generate([traces[i].transcript for i in open_], step_tokens)
        need_fact: list[tuple[int, str]] = []
        still = []
        for i, cont in zip(open_, conts):
            t = traces[i]
            cut = cont.split("Retrieved fact:")[0]
            final = _FINAL.search(cut)
            if final:
                nl = cut.find("\n", final.start())
                cut = cut if nl < 0 else cut[:nl]
            t.transcript += cut
            for m in _INTERMEDIATE.finditer(cut):
                step = t.steps[-1] if t.steps else {}
                step["answer"] = first_span(m.group(1))
                step["contradicts"] = "does not contradict" not in cut[max(0, m.start() - 80): m.start()]
                t.revised |= step["contradicts"]
            if final:
                t.answer = first_span(final.group(1))
                continue
            subs = _SUBQ.findall(cut)
            if not subs or "Retrieved fact:" not in cont:
                t.answer = t.steps[-1].get("answer", "") if t.steps else ""
                continue  # the model left the format: stop with what it has
            t.steps.append({"subquestion": subs[-1].strip(), "generated": ""})
            gen = re.findall(r"Generated answer:\s*(.+)", cut)
            if gen:
                t.steps[-1]["generated"] = gen[-1].strip()
            need_fact.append((i, subs[-1].strip()))
            still.append(i)
        facts = retrieve([q for _, q in need_fact]) if need_fact else []
        for (i, _), fact in zip(need_fact, facts):
            traces[i].steps[-1]["fact"] = fact
            traces[i].transcript += f"Retrieved fact: {fact or 'none'}.\n"
        open_ = still
    for i in open_:
        t = traces[i]
        t.answer = t.steps[-1].get("answer", "") if t.steps else ""
    return traces
