"""The ``factworld`` dataset: counterfactual edit requests over the fact world, in the shape
of CounterFact.

One request per (subject, relation): the subject's object is replaced by another object of
the same relation. Its probes:

* ``paraphrase_prompts``: the relation's phrasings held out from training for this subject
  (trained with other subjects only), so generality is measured on text the model never saw
  with the subject;
* ``neighborhood``: other subjects whose fact of the same relation is the edited subject's
  old object (CounterFact's choice), completed from other subjects of the relation when too
  few share it; each probe's target is that subject's own object;
* ``portability``: two- and three-hop questions (``kind="multihop"``) whose answers follow
  the chain from the new object (a new birthplace has another country, currency, river);
* ``generation_prompts``: open starts about the subject (fluency, consistency);
* with ``reverse_probes``: reverse questions (``kind="reverse"``, BIRD's reversibility) for the
  relations whose inverse is unique in the world (:data:`REVERSE`): "<new object> is the
  capital of" should now be answered with the edited subject.

Subjects with held-out phrasings form the ``eval`` split; the others form the ``train``
split (for methods that train, such as MEND and SERAC); no subject is in both.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

import kme
from kme import ConfigError, did_you_mean

from kme_factworld.vocab import GENERATION_STARTS
from kme_factworld.world import Subject, World, load_world

__all__ = ["FactWorldDataset", "build_requests", "REVERSE"]

#: Relations with a reverse question: relation -> (reverse phrasings with a ``{}`` slot for the
#: object, path from the object to the answer the unedited model gives). Only ``capital`` has a
#: unique inverse here: every city is the capital of at most one country. The inverses of the
#: other relations name many subjects (a city is the birthplace of many people, a country holds
#: six cities, a language or currency is shared), so "X is the birthplace of" has no single
#: right answer. No phrasing below is trained: the model knows the facts in one direction only.
#: The unedited model completes "<city> is the capital of" with the city's own country for all
#: 72 cities (the capital's country for the 12 capitals), so that is ``target_true``.
REVERSE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "capital": (("{} is the capital of", "{} is the capital city of"), ("country",)),
}


def _reverse(world: World, s: Subject, rel: str, new: str) -> list[kme.PortabilityQuestion]:
    """Reverse questions of an edit ``(s, rel, -> new)``: the new object's inverse fact is now ``s``."""
    if rel not in REVERSE:
        return []
    templates, path = REVERSE[rel]
    before = world.follow(new, path)
    return [kme.PortabilityQuestion(prompt=t.format(new), target_new=s.name,
                                    target_true=None if before == s.name else before, kind="reverse",
                                    meta={"inverse_of": rel})
            for t in templates]


def _request(world: World, s: Subject, rel: str, seed: int, n_neighbours: int,
             reverse: bool = False) -> kme.EditRequest:
    rng = random.Random(f"{seed}:{s.name}:{rel}")
    old = s.facts[rel]
    new = rng.choice([o for o in world.objects(rel) if o != old])
    templates = world.templates(rel)
    paraphrases = world.heldout_templates(s, rel) or [templates[i] for i in (5, 6)]
    peers = [p for p in world.of_kind(s.kind) if p.name != s.name]
    same = [p for p in peers if p.facts[rel] == old]
    rng.shuffle(same)
    chosen = same[:n_neighbours]
    if len(chosen) < n_neighbours:
        rest = [p for p in peers if p.facts[rel] not in (old, new)]
        rng.shuffle(rest)
        chosen += rest[: n_neighbours - len(chosen)]
    neighborhood = [kme.Probe(prompt=rng.choice(world.trained_templates(p, rel)).format(p.name), target=p.facts[rel])
                    for p in chosen]
    portability = [
        kme.PortabilityQuestion(prompt=q["template"].format(s.name), target_new=world.follow(new, q["path"]),
                                target_true=world.follow(old, q["path"]), kind="multihop")
        for q in world.multihop.get(rel, [])
    ] + (_reverse(world, s, rel, new) if reverse else [])
    return kme.EditRequest(
        case_id=f"{rel}:{s.name}",
        prompt=templates[0],
        subject=s.name,
        target_new=new,
        target_true=old,
        relation=rel,
        paraphrase_prompts=[t.format(s.name) for t in paraphrases],
        neighborhood=neighborhood,
        portability=portability,
        generation_prompts=[t.format(s.name) for t in GENERATION_STARTS[s.kind]],
        meta={
            "subject_kind": s.kind,
            "split": s.split,
            "paraphrases_heldout": s.heldout,
            "novel_prompt": world.novel_template(rel).format(s.name),
            "neighbours_share_old_object": sum(p.facts[rel] == old for p in chosen),
            "world_seed": world.seed,
        },
    )


def build_requests(world: World, split: str = "eval", *, seed: int = 0, relations: list[str] | None = None,
                   subject_kinds: list[str] | None = None, n_neighbours: int = 5,
                   shuffle: bool = True, reverse: bool = False) -> list[kme.EditRequest]:
    """Every request of ``split`` (``eval``, ``train`` or ``all``), in a seeded order
    (``reverse``: with the reverse questions of :data:`REVERSE`)."""
    rels = set(relations) if relations else None
    out = []
    for s in world.subjects:
        if (split != "all" and s.split != split) or (subject_kinds and s.kind not in subject_kinds):
            continue
        for rel in s.facts:
            if rels is None or rel in rels:
                out.append(_request(world, s, rel, seed, n_neighbours, reverse))
    if shuffle:
        random.Random(seed).shuffle(out)
    return out


class FactWorldDataset(kme.Dataset):
    """Counterfactual edits of the shipped fact world (the model alias ``factworld`` knows
    every true fact in it)."""

    name: ClassVar[str] = "factworld"
    description: ClassVar[str] = ("Counterfactual edits of kme's invented fact world (people, cities, countries; "
                                  "14 relations, held-out paraphrases, neighbourhood and multi-hop probes); offline")
    source_format: ClassVar[str] = "built in (kme-factworld world JSON); optional `world` path to another world file"
    homepage: ClassVar[str] = ""

    class Params(kme.Params):
        limit: int | None = Field(None, ge=1, description="at most this many requests")
        split: Literal["eval", "train", "all"] = Field(
            "eval", description="eval: subjects with held-out paraphrases (862 requests); train: the others; all: both "
            "(1,724 requests, for runs of more than 862 edits; train subjects' paraphrases were trained)")
        seed: int = Field(0, description="order of requests and choice of counterfactual objects")
        relations: list[str] | None = Field(None, description="only these relations")
        subject_kinds: list[Literal["person", "city", "country"]] | None = None
        n_neighbours: int = Field(5, ge=0, le=50, description="neighbourhood probes per request")
        shuffle: bool = Field(True, description="seeded order (False: world order)")
        world: str | None = Field(None, description="another world: a world file or a world shape (deep); default: "
                                     "the shipped one")
        distinct_subjects: bool = Field(
            False, description="at most one request per subject (its first in the seeded order): MEMIT-style batches "
            "without two edits of one subject, whose keys at the subject's last token coincide")
        reverse_probes: bool = Field(
            False, description="add reverse questions (portability kind reverse: '<new city> is the capital of' -> "
            "the edited country) to capital requests, the one relation whose inverse is unique in the world")

    #: the world when ``params.world`` is not given (a file or a shape name; None: the shipped
    #: one): the ``factworld-deep*`` datasets set ``"deep"``
    world_file: ClassVar[str | None] = None

    def _world(self) -> World:
        world = load_world(self.params.world or self.world_file)
        if self.params.relations:
            known = list(world.relations)
            for r in self.params.relations:
                if r not in world.relations:
                    raise ConfigError(f"unknown relation {r!r}; {did_you_mean(r, known)}",
                                      where=f"dataset {self.name} params.relations",
                                      hint=f"relations of the fact world: {', '.join(known)}")
        return world

    def _requests(self, split: str) -> list[kme.EditRequest]:
        p = self.params
        reqs = build_requests(self._world(), split, seed=p.seed, relations=p.relations,
                              subject_kinds=p.subject_kinds, n_neighbours=p.n_neighbours, shuffle=p.shuffle,
                              reverse=p.reverse_probes)
        if p.distinct_subjects:
            seen: set[str] = set()
            reqs = [r for r in reqs if not (r.subject in seen or seen.add(r.subject))]
        if not reqs:
            raise ConfigError("the filters select no request", where=f"dataset {self.name} params",
                              hint="check `relations` against `subject_kinds` (e.g. capital is a country relation)")
        return reqs

    def load(self) -> Iterator[kme.EditRequest]:
        reqs = self._requests(self.params.split)
        return iter(reqs[: self.params.limit] if self.params.limit else reqs)

    def train_requests(self) -> Iterator[kme.EditRequest]:
        """The ``train`` split (subjects disjoint from ``eval``), for methods that train."""
        if self.params.split in ("train", "all"):
            raise ConfigError(f"the train split is evaluated (split: {self.params.split}), so no disjoint split is "
                              "left to train on",
                              where=f"dataset {self.name} params.split",
                              hint="evaluate split: eval when an editor needs training requests")
        return iter(self._requests("train"))
