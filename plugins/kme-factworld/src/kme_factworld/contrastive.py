"""The ``factworld-contrastive`` dataset: contrastive pairs over the fact world, for debiasing
methods such as PCGU (Yu et al., 2023).

A debiasing pair is one context with two completions that should be interchangeable, of which
the model prefers one (WinoGender: "he" and "she" after an occupation). The fact world's
analogue is a *group*: one relation and two of its objects ``A`` and ``B`` (by default the two
most frequent among the split's subjects). Every subject whose fact of the relation is ``A``
or ``B`` gives one pair on the relation's first phrasing; the model, trained on the true
facts, prefers the subject's own object. The request asks to take that preference away.

Mapping onto :class:`kme.EditRequest`:

* ``target_true``: the advantaged completion (the subject's true object, what the model says);
* ``target_new``: the disadvantaged completion (the group's other object);
* ``paraphrase_prompts``: the relation's phrasings held out for the subject (does the
  debiasing carry over to other wording);
* ``neighborhood``: other subjects of the same relation whose object is neither ``A`` nor
  ``B``, each with its own object: facts the debiasing must leave alone;
* ``meta["contrastive"]``: ``group`` (``relation:A|B``), ``advantaged``, ``disadvantaged`` and
  ``goal`` (``equalise``: the pair's gap should go to zero, not flip).

Fine-tuning editors read the pair as an ordinary counterfactual edit (``target_true`` →
``target_new``), which is what plain fine-tuning is compared on; the ``contrastive_gap``
metric of ``kme-metrics`` measures the preference.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field, field_validator

import kme
from kme import ConfigError, did_you_mean

from kme_factworld.world import Subject, World, load_world

__all__ = ["ContrastiveDataset", "build_pairs", "group_objects"]


def group_objects(world: World, subjects: list[Subject], relation: str) -> tuple[str, str] | None:
    """The two most frequent objects of ``relation`` among ``subjects`` (ties: the world's
    object order), or ``None`` when fewer than two objects occur."""
    counts = Counter(s.facts[relation] for s in subjects if relation in s.facts)
    order = {o: i for i, o in enumerate(world.objects(relation))}
    ranked = sorted(counts, key=lambda o: (-counts[o], order.get(o, len(order))))
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


def _pair(world: World, s: Subject, rel: str, adv: str, dis: str, peers: list[Subject], seed: int,
          n_neighbours: int) -> kme.EditRequest:
    rng = random.Random(f"{seed}:{s.name}:{rel}:contrastive")
    others = [p for p in peers if p.name != s.name and p.facts.get(rel) not in (None, adv, dis)]
    rng.shuffle(others)
    paraphrases = world.heldout_templates(s, rel) or [world.templates(rel)[i] for i in (5, 6)]
    a, b = sorted((adv, dis))
    return kme.EditRequest(
        case_id=f"{rel}:{s.name}",
        prompt=world.templates(rel)[0],
        subject=s.name,
        target_new=dis,
        target_true=adv,
        relation=rel,
        paraphrase_prompts=[t.format(s.name) for t in paraphrases],
        neighborhood=[kme.Probe(prompt=rng.choice(world.trained_templates(p, rel)).format(p.name), target=p.facts[rel])
                      for p in others[:n_neighbours]],
        meta={"contrastive": {"group": f"{rel}:{a}|{b}", "advantaged": adv, "disadvantaged": dis,
                              "goal": "equalise"},
              "subject_kind": s.kind, "split": s.split, "world_seed": world.seed},
    )


def build_pairs(world: World, split: str = "eval", *, relations: list[str] | None = None,
                objects: list[str] | None = None, seed: int = 0, n_neighbours: int = 5,
                shuffle: bool = True) -> list[kme.EditRequest]:
    """Every contrastive pair of ``split`` (``eval``, ``train`` or ``all``) for ``relations``
    (default: all), in a seeded order; ``objects`` fixes the group's two objects."""
    out = []
    for rel in relations or list(world.relations):
        subjects = [s for s in world.subjects if rel in s.facts and (split == "all" or s.split == split)]
        pair = tuple(objects) if objects else group_objects(world, subjects, rel)
        if pair is None:
            continue
        a, b = pair
        kind_peers = [s for s in world.subjects if rel in s.facts]
        for s in subjects:
            if s.facts[rel] in (a, b):
                other = b if s.facts[rel] == a else a
                out.append(_pair(world, s, rel, s.facts[rel], other, kind_peers, seed, n_neighbours))
    if shuffle:
        random.Random(seed).shuffle(out)
    return out


class ContrastiveDataset(kme.Dataset):
    """Contrastive pairs (advantaged vs disadvantaged completion) over the shipped fact world."""

    name: ClassVar[str] = "factworld-contrastive"
    #: the world when ``params.world`` is not given (a file or a shape name; None: the shipped one)
    world_file: ClassVar[str | None] = None
    description: ClassVar[str] = (
        "Contrastive pairs over kme's fact world for debiasing (PCGU): per relation, subjects whose object is one "
        "of two objects A/B; target_true = the advantaged (true) object, target_new = the other; offline")
    source_format: ClassVar[str] = "built in (kme-factworld world JSON); optional `world` path to another world file"
    homepage: ClassVar[str] = ""

    class Params(kme.Params):
        limit: int | None = Field(None, ge=1, description="at most this many pairs")
        split: Literal["eval", "train", "all"] = Field("eval", description="subjects of this split (as factworld)")
        relations: list[str] | None = Field(None, description="only these relations (default: every relation)")
        objects: list[str] | None = Field(
            None, min_length=2, max_length=2,
            description="the group's two objects A and B (one relation only); default: the relation's two most "
                        "frequent objects among the split's subjects")
        seed: int = Field(0, description="order of pairs and choice of neighbourhood probes")
        n_neighbours: int = Field(5, ge=0, le=50, description="neighbourhood probes (other objects' facts) per pair")
        shuffle: bool = Field(True, description="seeded order (False: relation by relation, world order)")
        world: str | None = Field(None, description="another world: a world file or a world shape (deep); default: "
                                     "the shipped one")

        @field_validator("objects")
        @classmethod
        def _distinct(cls, v: list[str] | None) -> list[str] | None:
            if v is not None and v[0] == v[1]:
                raise ValueError(f"objects {v} name one object twice")
            return v

    def _world(self) -> World:
        p = self.params
        where = f"dataset {self.name} params"
        world = load_world(p.world or self.world_file)
        known = list(world.relations)
        for r in p.relations or []:
            if r not in world.relations:
                raise ConfigError(f"unknown relation {r!r}; {did_you_mean(r, known)}", where=f"{where}.relations",
                                  hint=f"relations of the fact world: {', '.join(known)}")
        if p.objects is not None:
            if not p.relations or len(p.relations) != 1:
                raise ConfigError("objects name one group, so they need exactly one relation",
                                  where=f"{where}.objects", hint="add relations: [RELATION]")
            allowed = world.objects(p.relations[0])
            for o in p.objects:
                if o not in allowed:
                    raise ConfigError(f"{o!r} is not an object of {p.relations[0]!r}; {did_you_mean(o, allowed)}",
                                      where=f"{where}.objects")
        return world

    def load(self) -> Iterator[kme.EditRequest]:
        p = self.params
        reqs = build_pairs(self._world(), p.split, relations=p.relations, objects=p.objects, seed=p.seed,
                           n_neighbours=p.n_neighbours, shuffle=p.shuffle)
        if not reqs:
            raise ConfigError("the filters select no pair", where=f"dataset {self.name} params",
                              hint="choose relations whose subjects in this split have the group's objects")
        return iter(reqs[: p.limit] if p.limit else reqs)
