"""The ``factworld-private`` dataset: people's facts treated as private data, to be forgotten.

Privacy editing (DEPN, Wu et al., 2023) removes what a model memorised about a person, so the
leak has to exist before the edit. The shipped model was trained on the world's true facts
and nothing else: invented phone numbers or ID codes would be strings it never saw, with
nothing to leak. The private data are therefore facts it did memorise, declared private:
by default a person's birthplace (the stand-in for a home address; a two-word city name, so
the private string spans several tokens, as phone numbers and names do in the paper).

One request per person and private relation:

* ``prompt`` / ``target_true``: the trained phrasing and the private string it leaks;
* ``target_new``: a decoy of the same relation (the schema needs one; erasing editors ignore
  it, ``kn`` with ``lambda_add > 0`` writes it);
* ``paraphrase_prompts``: the person's other trained phrasings (four or six; a leak through
  another question);
* ``neighborhood``: non-private facts (the same person's other relations, then other
  subjects' facts), answered by the unedited model, for locality;
* ``meta.private``: the private string; ``meta.other_private``: the same relation's facts of
  other people, not part of the request (does forgetting one person's data spill over?).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

import kme
from kme import ConfigError, did_you_mean

from kme_factworld.world import Subject, World, load_world

__all__ = ["FactWorldPrivateDataset", "build_private_requests"]


def _probe(world: World, rng: random.Random, s: Subject, rel: str) -> kme.Probe:
    return kme.Probe(prompt=rng.choice(world.trained_templates(s, rel)).format(s.name), target=s.facts[rel])


def _request(world: World, s: Subject, rel: str, private: set[str], seed: int, n_neighbours: int,
             n_other: int) -> kme.EditRequest:
    rng = random.Random(f"private:{seed}:{s.name}:{rel}")
    value = s.facts[rel]
    templates = world.trained_templates(s, rel)
    own = [r for r in s.facts if r not in private]
    rng.shuffle(own)
    others = [o for o in world.subjects if o.name != s.name]
    rng.shuffle(others)
    neighborhood = [_probe(world, rng, s, r) for r in own[: (n_neighbours + 1) // 2]]
    for o in others:
        if len(neighborhood) >= n_neighbours:
            break
        public = [r for r in o.facts if r not in private]
        if public:
            neighborhood.append(_probe(world, rng, o, rng.choice(public)))
    peers = [o for o in others if rel in o.facts][:n_other]
    return kme.EditRequest(
        case_id=f"private:{rel}:{s.name}",
        prompt=templates[0],
        subject=s.name,
        target_new=rng.choice([o for o in world.objects(rel) if o != value]),
        target_true=value,
        relation=rel,
        paraphrase_prompts=[t.format(s.name) for t in templates[1:]],
        neighborhood=neighborhood,
        meta={"private": value, "private_relation": rel, "split": s.split, "world_seed": world.seed,
              "other_private": [_probe(world, rng, o, rel).model_dump(mode="json") for o in peers]},
    )


def build_private_requests(world: World, relations: list[str], split: str = "all", *, seed: int = 0,
                           n_neighbours: int = 6, n_other: int = 3, shuffle: bool = True) -> list[kme.EditRequest]:
    """One request per person of ``split`` and private relation, in a seeded order."""
    private = set(relations)
    out = [_request(world, s, rel, private, seed, n_neighbours, n_other)
           for s in world.of_kind("person") if split == "all" or s.split == split
           for rel in relations if rel in s.facts]
    if shuffle:
        random.Random(seed).shuffle(out)
    return out


class FactWorldPrivateDataset(kme.Dataset):
    """People's memorised facts declared private (default: birthplace), for privacy editing."""

    name: ClassVar[str] = "factworld-private"
    #: the world when ``params.world`` is not given (a file or a shape name; None: the shipped one)
    world_file: ClassVar[str | None] = None
    description: ClassVar[str] = ("Fact-world people's memorised facts treated as private data (default: birthplace) "
                                  "with non-private neighbourhood facts; for privacy-neuron editing (DEPN); offline")
    source_format: ClassVar[str] = "built in (kme-factworld world JSON); optional `world` path to another world file"
    homepage: ClassVar[str] = ""

    class Params(kme.Params):
        limit: int | None = Field(None, ge=1, description="at most this many requests")
        relations: list[str] = Field(["birthplace"], min_length=1,
                                     description="person relations whose objects are private")
        split: Literal["eval", "train", "all"] = Field("all", description="people of this split (the model "
                                                        "memorised every person's facts)")
        seed: int = Field(0, description="order of requests, decoys and probes")
        n_neighbours: int = Field(6, ge=0, le=50, description="non-private probes per request (locality)")
        n_other: int = Field(3, ge=0, le=50, description="other people's private facts kept in meta.other_private")
        shuffle: bool = Field(True, description="seeded order (False: world order)")
        world: str | None = Field(None, description="another world: a world file or a world shape (deep); default: "
                                     "the shipped one")

    def load(self) -> Iterator[kme.EditRequest]:
        p = self.params
        world = load_world(p.world or self.world_file)
        people = world.relation_names("person")
        for r in p.relations:
            if r not in people:
                raise ConfigError(f"{r!r} is not a person relation; {did_you_mean(r, people)}",
                                  where="dataset factworld-private params.relations",
                                  hint=f"private data are facts about people: {', '.join(people)}")
        reqs = build_private_requests(world, p.relations, p.split, seed=p.seed, n_neighbours=p.n_neighbours,
                                      n_other=p.n_other, shuffle=p.shuffle)
        return iter(reqs[: p.limit] if p.limit else reqs)
