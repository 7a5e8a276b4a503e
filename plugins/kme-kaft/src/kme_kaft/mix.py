"""The KAFT training mix, built from a dataset's train-split edit requests.

A row is a list of ``(text, learn)`` segments. Only answers carry loss: the stated objects
cannot be predicted, and the question text is the context's. Each row states one fact of a
request (its new object with probability ``counterfactual_p``, else its true object), maybe
among distractor statements about other requests and after demonstrations of the same
task, then asks one question:

* **relevant**: the stated fact again (its prompt or a paraphrase) -> the stated object;
* **other subject**: the same relation of another subject (a neighbourhood probe or another
  request of the relation) -> that subject's own object, from memory;
* **other relation**: another fact of the stated subject -> its true object, from memory;
* **unrelated**: any other request's fact -> its true object, from memory.

The last three are the "irrelevant context" half of KAFT: the model learns to check whom
and what a statement is about before using it, instead of copying any stated object.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from kme import EditRequest, join_target

__all__ = ["Segment", "MixConfig", "Pools", "kaft_row", "QUERY_KINDS"]

Segment = tuple[str, bool]
QUERY_KINDS = ("relevant", "other_subject", "other_relation", "unrelated")


@dataclass
class MixConfig:
    """How rows are drawn (the ``mix`` part of the trainer's params)."""

    counterfactual_p: float = 0.8
    relevant_p: float = 0.5
    demos_p: float = 0.5
    max_demos: int = 16
    max_distractors: int = 4
    phrasings: bool = True
    statement_prefixes: Sequence[str] = ("New Fact:", "New fact:", "Fact:", "Update:", "Note:")
    query_prefixes: Sequence[str] = ("", "", "Prompt:", "Q:")


@dataclass
class Pools:
    """The requests indexed for drawing rows. Only requests with a true object take part:
    an irrelevant question needs an answer from memory."""

    requests: list[EditRequest]
    by_subject: dict[str, list[EditRequest]] = field(default_factory=dict)
    by_relation: dict[str, list[EditRequest]] = field(default_factory=dict)
    phrasings: dict[str, list[str]] = field(default_factory=dict)
    """Per relation, every ``{}`` template the requests show: their prompts, paraphrases and
    the neighbourhood prompts about a subject of the requests (more phrasings than a
    request's own, so a statement is not always in its prompt's words)."""

    @classmethod
    def of(cls, requests: Sequence[EditRequest], phrasings: bool = True) -> "Pools":
        usable = [r for r in requests if r.target_true and r.target_true != r.target_new]
        subj: dict[str, list[EditRequest]] = defaultdict(list)
        rel: dict[str, list[EditRequest]] = defaultdict(list)
        for r in usable:
            subj[r.subject].append(r)
            rel[r.relation or ""].append(r)
        found: dict[str, set[str]] = defaultdict(set)
        for r in usable if phrasings else []:
            texts = [r.text, *r.paraphrase_prompts, *(p.prompt for p in r.neighborhood)]
            for t in texts:
                for name in [r.subject, *(n for n in subj if n != r.subject and n in t)][:2]:
                    if t.count(name) == 1:
                        found[r.relation or ""].add(t.replace(name, "{}"))
                        break
        return cls(usable, dict(subj), dict(rel), {k: sorted(v) for k, v in found.items()})


def _prompts(r: EditRequest) -> list[str]:
    return [r.text, *r.paraphrase_prompts]


def _ask(pools: Pools, r: EditRequest, rng: random.Random) -> str:
    """A question about ``r``'s fact: its prompt or a paraphrase, or (half the time, when the
    pools hold phrasings) any phrasing of its relation."""
    templates = pools.phrasings.get(r.relation or "", [])
    if not templates or rng.random() < 0.5:
        return rng.choice(_prompts(r))
    return rng.choice(templates).replace("{}", r.subject)


def _statement(pools: Pools, r: EditRequest, obj: str, prefix: str, rng: random.Random) -> str:
    """``r``'s fact stated with ``obj``: in its prompt's words, or (half the time, when the
    pools hold phrasings) in any phrasing of its relation."""
    text = r.text
    templates = pools.phrasings.get(r.relation or "", [])
    if templates and rng.random() < 0.5:
        text = rng.choice(templates).replace("{}", r.subject)
    return f"{prefix} {text}{join_target(text, obj)}{rng.choice(('.', ''))}"


def _query(prompt: str, answer: str, prefix: str) -> list[Segment]:
    shown = f"{prefix} {prompt}" if prefix else prompt
    return [(shown, False), (join_target(shown, answer), True)]


def _question(pools: Pools, r: EditRequest, stated: str, kind: str, rng: random.Random) -> tuple[str, str]:
    """(prompt, answer) of one question of ``kind`` after the statement of ``r``."""
    if kind == "other_subject":
        same = [o for o in pools.by_relation.get(r.relation or "", []) if o.subject != r.subject]
        if r.neighborhood and (not same or rng.random() < 0.5):
            probe = rng.choice(r.neighborhood)
            return probe.prompt, probe.target
        if same:
            o = rng.choice(same)
            return _ask(pools, o, rng), o.target_true or ""
    if kind == "other_relation":
        others = [o for o in pools.by_subject.get(r.subject, []) if o.relation != r.relation]
        if others:
            o = rng.choice(others)
            return _ask(pools, o, rng), o.target_true or ""
    if kind != "relevant":
        o = rng.choice(pools.requests)
        if o.subject != r.subject:
            return _ask(pools, o, rng), o.target_true or ""
    return _ask(pools, r, rng), stated


def _example(pools: Pools, cfg: MixConfig, rng: random.Random, sp: str, qp: str,
             sep: str) -> tuple[list[Segment], EditRequest]:
    """One statement and one question about it or about something else."""
    r = rng.choice(pools.requests)
    stated = r.target_new if rng.random() < cfg.counterfactual_p else (r.target_true or r.target_new)
    kind = "relevant" if rng.random() < cfg.relevant_p else rng.choice(QUERY_KINDS[1:])
    prompt, answer = _question(pools, r, stated, kind, rng)
    return [(_statement(pools, r, stated, sp, rng) + sep, False), *_query(prompt, answer, qp)], r


def kaft_row(pools: Pools, cfg: MixConfig, rng: random.Random, n_demos: int | None = None) -> list[Segment]:
    """One training row: demonstrations (maybe), statements, one question and its answer."""
    sp, qp = rng.choice(list(cfg.statement_prefixes)), rng.choice(list(cfg.query_prefixes))
    sep = rng.choice(("\n", "\n", "\n\n"))
    if n_demos is None:
        n_demos = rng.randint(1, cfg.max_demos) if cfg.max_demos and rng.random() < cfg.demos_p else 0
    row: list[Segment] = []
    for _ in range(n_demos):
        segs, _ = _example(pools, cfg, rng, sp, qp, "\n")
        row += segs + [("\n\n", False)]
    segs, r = _example(pools, cfg, rng, sp, qp, sep)
    question = segs[1:]
    asked = question[0][0]
    lines = [segs[0][0].rstrip("\n")]
    for _ in range(rng.randint(0, cfg.max_distractors)):
        o = rng.choice(pools.requests)
        if o.subject != r.subject and o.subject not in asked:
            lines.append(_statement(pools, o, o.target_new, sp, rng))
    rng.shuffle(lines)
    return row + [("\n".join(lines) + sep, False), *question]
