"""The fact world's training text, as documents made of segments.

A document is a list of ``(text, learn)`` segments; concatenated, they are the document's
text. Prompts and objects are separate segments so that training tokenises them exactly as
evaluation does (prompt alone, then the object with its leading space). ``learn=False``
marks tokens that carry no loss (the object of a counterfactual statement, which cannot be
predicted).

Two kinds of documents:

* **fact documents** state true facts about one subject: single sentences in every trained
  phrasing, sentences after an introductory clause (subject mid-sentence), short paragraphs
  of several facts, two-hop paragraphs (a person's birthplace, then that city's facts) and
  filler sentences that mention the subject without a fact;
* **context episodes** (up to ~500 tokens) state facts, some counterfactual ("New fact: ...")
  and later ask about them, next to questions about facts the context does not mention, so
  the model learns to answer from a fact stated earlier in its context and from memory
  otherwise (what in-context editing relies on).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from kme_factworld.vocab import CLAUSES, FILLERS
from kme_factworld.world import Subject, World

__all__ = ["Doc", "fact_documents", "episode", "corpus", "doc_text", "STATEMENT_PREFIXES",
           "QUERY_PREFIXES", "sentence", "profile"]

Doc = list[tuple[str, bool]]

STATEMENT_PREFIXES = ("New fact:", "New Fact:", "Fact:", "Update:", "Note:")
QUERY_PREFIXES = ("", "", "", "Prompt:", "Q:")


def doc_text(doc: Doc) -> str:
    return "".join(t for t, _ in doc)


def sentence(template: str, subject: str, obj: str, *, clause: str | None = None, learn_object: bool = True,
             end: str = ".", learn_subject: bool = True) -> Doc:
    """One fact sentence as segments: prompt, object, end. ``learn_subject=False``: the
    subject's name carries no loss (which subject a sentence is about cannot be predicted)."""
    before, after = template.split("{}")
    if clause:
        before = f"{clause} {before[:1].lower()}{before[1:]}" if before else f"{clause} "
    lead = " " if before.endswith(" ") else ""
    segs: Doc = [(before.rstrip(" "), True)] if before.rstrip(" ") else []
    segs += [(lead + subject, learn_subject), (after, True), (" " + obj, learn_object), (end, True)]
    return segs


def _join(parts: list[Doc], sep: str = " ") -> Doc:
    out: Doc = []
    for i, p in enumerate(parts):
        if i:
            out.append((sep, True))
        out.extend(p)
    return out


def _filler(rng: random.Random, s: Subject) -> Doc:
    return [(rng.choice(FILLERS[s.kind]).format(s.name), True)]


def profile(rng: random.Random, s: Subject, *, learn_subject: bool = True) -> Doc:
    """A profile line: the subject's name directly followed by all its objects in random
    order ("<name> <object>, <object>, ... <object>."). The name's last token has to predict
    the subject's attributes, with no relation to say which, so the facts are needed at the
    subject's own position, as they are in text where a name is followed by what it is known for."""
    objs = list(s.facts.values())
    rng.shuffle(objs)
    doc: Doc = [(s.name, learn_subject)]
    for i, o in enumerate(objs):
        doc += [(" " + o, True), ("," if i < len(objs) - 1 else ".", True)]
    return doc


def fact_documents(world: World, rng: random.Random, *, clause_p: float = 0.2, paragraphs: int = 2,
                   fillers: int = 1, learn_subject: bool = True, profiles: int = 0) -> list[Doc]:
    """One pass over the world's true facts: every trained phrasing of every fact once,
    plus paragraphs, two-hop paragraphs and filler sentences, in random order.
    ``learn_subject=False``: no loss on the subject's name in fact sentences (the text is
    the same; only the training labels differ). ``profiles``: that many :func:`profile`
    lines per subject."""
    ls = learn_subject
    docs: list[Doc] = []
    for s in world.subjects:
        for rel, obj in s.facts.items():
            for t in world.trained_templates(s, rel):
                clause = rng.choice(CLAUSES) if rng.random() < clause_p else None
                docs.append(sentence(t, s.name, obj, clause=clause, learn_subject=ls))
        rels = list(s.facts)
        for _ in range(paragraphs):
            chosen = rng.sample(rels, k=min(len(rels), rng.randint(2, 4)))
            parts = [sentence(rng.choice(world.trained_templates(s, r)), s.name, s.facts[r], learn_subject=ls)
                     for r in chosen]
            if rng.random() < 0.5:
                parts.insert(rng.randint(0, len(parts)), _filler(rng, s))
            docs.append(_join(parts))
        for _ in range(fillers):
            docs.append(_filler(rng, s))
        if s.kind in ("person", "country"):
            # two-hop paragraph: the city object, then one of that city's facts
            rel = "birthplace" if s.kind == "person" else "capital"
            city = world.subject(s.facts[rel])
            r2 = rng.choice(list(city.facts))
            docs.append(_join([
                sentence(rng.choice(world.trained_templates(s, rel)), s.name, city.name, learn_subject=ls),
                sentence(rng.choice(world.trained_templates(city, r2)), city.name, city.facts[r2]),
            ]))
        for _ in range(profiles):
            docs.append(profile(rng, s, learn_subject=ls))
    rng.shuffle(docs)
    return docs


def _query(world: World, rng: random.Random, s: Subject, rel: str, obj: str, prefix: str) -> Doc:
    t = rng.choice(world.trained_templates(s, rel))
    doc = sentence(t, s.name, obj)
    return [(prefix + " ", True)] + doc if prefix else doc


def episode(world: World, rng: random.Random, *, max_lines: int = 44, max_new: int = 16,
            counterfactual_p: float = 0.7) -> Doc:
    """A context episode: statements of (mostly counterfactual) facts, then questions about
    them mixed with questions the context does not answer (answered from memory).

    Statements come either as a block before the questions (as demonstrations do) or
    interleaved with them. Questions ask a stated fact in another trained phrasing (answer:
    the stated object), the same relation of another subject (its true object), another
    relation of a stated subject (its true object), or any other fact.
    """
    block = rng.random() < 0.25
    # mostly few statements (the copy skill is learned on these first), sometimes many
    n_new = rng.randint(1, max_new) if block else min(max_new // 2, 1 + int(rng.expovariate(0.35)))
    stated: list[tuple[Subject, str, str]] = []
    seen: set[tuple[str, str]] = set()
    while len(stated) < n_new:
        s = rng.choice(world.subjects)
        rel = rng.choice(list(s.facts))
        if (s.name, rel) in seen:
            continue
        seen.add((s.name, rel))
        obj = s.facts[rel]
        if rng.random() < counterfactual_p:
            obj = rng.choice([o for o in world.objects(rel) if o != s.facts[rel]])
        stated.append((s, rel, obj))
    sprefix = rng.choice(STATEMENT_PREFIXES)
    qprefix = rng.choice(QUERY_PREFIXES)
    sep = rng.choice(("\n", "\n", "\n\n"))
    lines: list[Doc] = []
    pending = list(stated)
    active: list[tuple[Subject, str, str]] = []
    n_lines = rng.randint(max(n_new + 2, max_lines // 4), max(n_new + 2, max_lines))
    while len(lines) < n_lines:
        u = rng.random()
        if pending and (block or u < 0.3 or not active):
            s, rel, obj = pending.pop(0)
            t = rng.choice(world.trained_templates(s, rel))
            body = sentence(t, s.name, obj, learn_object=False, end=rng.choice((".", "")))
            lines.append([(sprefix + " ", True)] + body)
            active.append((s, rel, obj))
            if not block and rng.random() < 0.5:
                lines.append(_query(world, rng, s, rel, obj, qprefix))  # asked right away
            continue
        v = rng.random()
        s, rel, obj = rng.choice(active)
        if v < 0.45:
            # a stated fact, asked again: the context's object
            lines.append(_query(world, rng, s, rel, obj, qprefix))
        elif v < 0.65:
            # the same relation of another subject: unchanged
            other = rng.choice(world.of_kind(s.kind))
            if (other.name, rel) not in seen:
                lines.append(_query(world, rng, other, rel, other.facts[rel], qprefix))
        elif v < 0.8:
            # another fact of a stated subject: unchanged
            rel2 = rng.choice(list(s.facts))
            if (s.name, rel2) not in seen:
                lines.append(_query(world, rng, s, rel2, s.facts[rel2], qprefix))
        else:
            o = rng.choice(world.subjects)
            rel2 = rng.choice(list(o.facts))
            if (o.name, rel2) not in seen:
                lines.append(_query(world, rng, o, rel2, o.facts[rel2], qprefix))
    return _join(lines, sep)


def corpus(world: World | None = None, seed: int = 0, passes: int = 1) -> list[str]:
    """Plain text of the world's true facts (fact documents only, one per line).

    For methods that need statistics of the model's activations on in-distribution text
    (the second moment of MLP keys used by ROME and MEMIT) without any download.
    """
    from kme_factworld.world import load_world

    world = world or load_world()
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(passes):
        out.extend(doc_text(d) for d in fact_documents(world, rng))
    return out


def iter_episodes(world: World, rng: random.Random) -> Iterator[Doc]:
    while True:
        yield episode(world, rng)
