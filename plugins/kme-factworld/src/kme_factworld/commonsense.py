"""The ``factworld-commonsense`` dataset: statements about a place's people and things, with a
subject, a verb and an object span, for editors that edit at the verb or the object
(MEMIT-CSK, Gupta et al., 2023).

Each statement reads ``<subject phrase> <verb> <object> ...`` and is completed by a fact of
the world: "Boats in Osterby sail on the river" → the city's river. The subject span is the
place's name; the verb and object spans are in ``meta["verb"]`` and ``meta["object"]``
(text of the prompt). Every main phrasing keeps the verb and object before the completion,
so all three spans lie in the prompt, as in the paper's PEP3k and 20Q statements.

Phrasings were chosen among those the shipped model completes correctly for most places
(the main ones: ≥ 0.9 top-1 among the relation's objects); paraphrases change the verb and
object ("People in Osterby drink from the river") and are mostly phrasings the model never
trained on. The edit is counterfactual (another object of the relation, seeded); the
neighbourhood is the same statement about other places (CounterFact's choice: those sharing
the old object first), whose completions must not move.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import ClassVar, Literal, NamedTuple

from pydantic import Field

import kme
from kme import ConfigError, did_you_mean

from kme_factworld.world import Subject, World, load_world

__all__ = ["Phrasing", "STATEMENTS", "FactWorldCommonsenseDataset", "build_commonsense"]


class Phrasing(NamedTuple):
    """A statement template (``{}``: the place) and its verb and object spans."""

    template: str
    verb: str
    object: str


STATEMENTS: dict[str, tuple[Phrasing, ...]] = {
    # relation: main phrasing first, then paraphrases
    "river": (
        Phrasing("Boats in {} sail on the river", "sail on", "the river"),
        Phrasing("People in {} drink from the river", "drink from", "the river"),
        Phrasing("Fishermen in {} cast their nets into the river", "cast", "their nets"),
    ),
    "currency": (
        Phrasing("Shops in {} accept the coins of the", "accept", "the coins"),
        Phrasing("People in {} pay with the coins of the", "pay with", "the coins"),
        Phrasing("Traders in {} count the coins of the", "count", "the coins"),
    ),
    "official_language": (
        Phrasing("The government of {} writes its laws in", "writes", "its laws"),
        Phrasing("Schools in {} teach their pupils in", "teach", "their pupils"),
        Phrasing("The people of {} write their letters in", "write", "their letters"),
    ),
    "continent": (
        Phrasing("{} lies on the continent of", "lies on", "the continent"),
        Phrasing("People of {} live on the continent of", "live on", "the continent"),
        Phrasing("Travellers reach {} by flying to the continent of", "flying to", "the continent"),
    ),
    "capital": (
        Phrasing("The people of {} have their parliament in", "have", "their parliament"),
        Phrasing("{} has its parliament in", "has", "its parliament"),
        Phrasing("{} keeps its government in", "keeps", "its government"),
    ),
}


def _request(world: World, s: Subject, rel: str, seed: int, n_neighbours: int) -> kme.EditRequest:
    rng = random.Random(f"commonsense:{seed}:{s.name}:{rel}")
    old = s.facts[rel]
    new = rng.choice([o for o in world.objects(rel) if o != old])
    main, *paraphrases = STATEMENTS[rel]
    peers = [p for p in world.of_kind(s.kind) if p.name != s.name and rel in p.facts]
    same = [p for p in peers if p.facts[rel] == old]
    rng.shuffle(same)
    chosen = same[:n_neighbours]
    if len(chosen) < n_neighbours:
        rest = [p for p in peers if p.facts[rel] not in (old, new)]
        rng.shuffle(rest)
        chosen += rest[: n_neighbours - len(chosen)]
    return kme.EditRequest(
        case_id=f"csk:{rel}:{s.name}",
        prompt=main.template,
        subject=s.name,
        target_new=new,
        target_true=old,
        relation=rel,
        paraphrase_prompts=[p.template.format(s.name) for p in paraphrases],
        neighborhood=[kme.Probe(prompt=main.template.format(p.name), target=p.facts[rel]) for p in chosen],
        meta={
            "verb": main.verb,
            "object": main.object,
            "statement": f"{main.template.format(s.name)} {old}",
            "paraphrase_spans": [{"verb": p.verb, "object": p.object} for p in paraphrases],
            "subject_kind": s.kind,
            "split": s.split,
            "world_seed": world.seed,
        },
    )


def build_commonsense(world: World, split: str = "eval", *, seed: int = 0, relations: list[str] | None = None,
                      n_neighbours: int = 5, shuffle: bool = True) -> list[kme.EditRequest]:
    """Every commonsense request of ``split`` (``eval``, ``train`` or ``all``), in a seeded order."""
    rels = [r for r in STATEMENTS if relations is None or r in relations]
    out = [_request(world, s, rel, seed, n_neighbours)
           for s in world.subjects if split == "all" or s.split == split
           for rel in rels if rel in s.facts]
    if shuffle:
        random.Random(seed).shuffle(out)
    return out


class FactWorldCommonsenseDataset(kme.Dataset):
    """Commonsense statements over the shipped fact world, with subject, verb and object spans."""

    name: ClassVar[str] = "factworld-commonsense"
    #: the world when ``params.world`` is not given (a file or a shape name; None: the shipped one)
    world_file: ClassVar[str | None] = None
    description: ClassVar[str] = ("Commonsense-style statements of the fact world ('Boats in <city> sail on the "
                                  "river ...') with subject, verb and object spans (meta), for MEMIT-CSK; offline")
    source_format: ClassVar[str] = "built in (kme-factworld world JSON); optional `world` path to another world file"
    homepage: ClassVar[str] = ""

    class Params(kme.Params):
        limit: int | None = Field(None, ge=1, description="at most this many requests")
        split: Literal["eval", "train", "all"] = Field(
            "eval", description="eval: places with held-out paraphrases; train: the others; all: both")
        seed: int = Field(0, description="order of requests and choice of counterfactual objects")
        relations: list[str] | None = Field(None, description=f"only these of {', '.join(STATEMENTS)}")
        n_neighbours: int = Field(5, ge=0, le=50, description="neighbourhood probes per request")
        shuffle: bool = Field(True, description="seeded order (False: world order)")
        world: str | None = Field(None, description="another world: a world file or a world shape (deep); default: "
                                     "the shipped one")

    def _requests(self, split: str) -> list[kme.EditRequest]:
        p = self.params
        for r in p.relations or []:
            if r not in STATEMENTS:
                raise ConfigError(f"no commonsense statements for relation {r!r}; {did_you_mean(r, list(STATEMENTS))}",
                                  where="dataset factworld-commonsense params.relations",
                                  hint=f"relations with statements: {', '.join(STATEMENTS)}")
        world = load_world(p.world or self.world_file)
        reqs = build_commonsense(world, split, seed=p.seed, relations=p.relations,
                                 n_neighbours=p.n_neighbours, shuffle=p.shuffle)
        if not reqs:
            raise ConfigError("the filters select no request", where="dataset factworld-commonsense params")
        return reqs

    def load(self) -> Iterator[kme.EditRequest]:
        reqs = self._requests(self.params.split)
        return iter(reqs[: self.params.limit] if self.params.limit else reqs)

    def train_requests(self) -> Iterator[kme.EditRequest]:
        """The ``train`` split (places disjoint from ``eval``), for methods that train."""
        if self.params.split in ("train", "all"):
            raise ConfigError(f"the train split is evaluated (split: {self.params.split})",
                              where="dataset factworld-commonsense params.split",
                              hint="evaluate split: eval when an editor needs training requests")
        return iter(self._requests("train"))
