"""The fact world: invented people, cities and countries with facts about them, generated
deterministically from a seed and saved as JSON.

People have a birthplace (a city), cities lie in a country and countries have a capital (a
city), so two- and three-hop chains have defined answers before and after an edit.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kme import DatasetRecordError, depth_error, read_text

from kme_factworld.vocab import (CITY_ENDINGS, HALF, MULTIHOP, N_TRAINED, NOVEL, RELATIONS, SYLLABLES,
                                 RelationSpec)

__all__ = ["World", "Subject", "WorldShape", "WORLD_SHAPES", "generate_world", "load_world", "WORLD_PATH",
           "WORLD_FORMAT", "DEFAULT_SEED"]

WORLD_FORMAT = "kme-factworld-world"
WORLD_VERSION = 1
DEFAULT_SEED = 0
WORLD_PATH = Path(__file__).parent / "data" / "world.json"

N_PEOPLE = 200
N_FIRST_NAMES = N_PEOPLE // 3
# Every person has their own last name (first names are shared) and every city its own
# second word: a subject's last token identifies it, as for most real entities. With shared
# last names (100 for 200 people) and shared city suffixes ("Vale", "Ford", ...) the MLP keys
# at the subject's last token mostly encoded that shared token (whitened cosine 0.67 between
# keys of people sharing a last name vs 0.06 otherwise), the model recalled facts by reading
# both name tokens late, and subject-position editors (ROME, MEMIT) could not single out a
# subject; see docs/locate-edit.md.
N_LAST_NAMES = N_PEOPLE
N_COUNTRIES = 12
CITIES_PER_COUNTRY = 6
N_COMPANIES = 14
N_LANGUAGES = 10
N_RIVERS = 16
N_CONTINENTS = 5


@dataclass(frozen=True)
class WorldShape:
    """How many subjects of each kind a world has; relations, phrasings and objects are the
    same in every shape. Half of each kind (rounded down) forms the ``eval`` split."""

    name: str
    people: int = N_PEOPLE
    countries: int = N_COUNTRIES
    cities_per_country: int = CITIES_PER_COUNTRY

    @property
    def subjects(self) -> int:
        return self.people + self.countries * (1 + self.cities_per_country)


#: ``default``: the shipped world (284 subjects). ``deep``: 2,052 subjects (1,026 in the eval
#: split, so 1,000 edits with distinct subjects exist), the world of ``kme-factworld-deep``.
#: Countries stay at 12 (one currency each); the deep world has 20 cities per country.
WORLD_SHAPES: dict[str, WorldShape] = {
    "default": WorldShape("default"),
    "deep": WorldShape("deep", people=1800, countries=12, cities_per_country=20),
}


@dataclass
class Subject:
    """One subject: its name, kind, facts, and which paraphrase templates it never sees."""

    name: str
    kind: str
    facts: dict[str, str]
    heldout: bool  # templates HALF are held out from training for this subject
    split: str  # "eval" | "train": which request split the subject's edits belong to

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "heldout": self.heldout, "split": self.split,
                "facts": dict(self.facts)}


@dataclass
class World:
    """Subjects, relations (with their phrasings and objects) and the two-hop question set."""

    seed: int
    relations: dict[str, dict[str, Any]]
    subjects: list[Subject]
    multihop: dict[str, list[dict[str, Any]]]
    shape: str = "default"
    _by_name: dict[str, Subject] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {s.name: s for s in self.subjects}

    # -- access -------------------------------------------------------------------------
    def subject(self, name: str) -> Subject:
        try:
            return self._by_name[name]
        except KeyError:
            raise DatasetRecordError(f"the fact world has no subject {name!r}") from None

    def of_kind(self, kind: str) -> list[Subject]:
        return [s for s in self.subjects if s.kind == kind]

    def relation_names(self, kind: str | None = None) -> list[str]:
        return [r for r, d in self.relations.items() if kind is None or d["subject_kind"] == kind]

    def templates(self, relation: str) -> list[str]:
        return list(self.relations[relation]["templates"])

    def objects(self, relation: str) -> list[str]:
        return list(self.relations[relation]["objects"])

    def trained_templates(self, subject: Subject, relation: str) -> list[str]:
        """Phrasings of ``relation`` that training text uses with ``subject``."""
        t = self.templates(relation)
        idx = list(range(N_TRAINED)) + ([] if subject.heldout else list(HALF))
        return [t[i] for i in idx]

    def heldout_templates(self, subject: Subject, relation: str) -> list[str]:
        """Phrasings trained with other subjects but never with ``subject`` (paraphrases)."""
        t = self.templates(relation)
        return [t[i] for i in HALF] if subject.heldout else []

    def novel_template(self, relation: str) -> str:
        """The phrasing of ``relation`` that no training text uses."""
        return self.templates(relation)[NOVEL]

    def follow(self, start: str, path: list[str] | tuple[str, ...]) -> str:
        """Follow relations from the subject named ``start`` (a two-hop chain's answer)."""
        cur = start
        for rel in path:
            cur = self.subject(cur).facts[rel]
        return cur

    def facts(self) -> list[tuple[Subject, str, str]]:
        return [(s, r, o) for s in self.subjects for r, o in s.facts.items()]

    # -- serialisation ------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": WORLD_FORMAT,
            "version": WORLD_VERSION,
            "seed": self.seed,
            **({"shape": self.shape} if self.shape != "default" else {}),
            "template_roles": {"trained": list(range(N_TRAINED)), "heldout_for_half": list(HALF),
                               "novel": NOVEL},
            "relations": self.relations,
            "multihop": self.multihop,
            "subjects": [s.to_json() for s in self.subjects],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "world") -> "World":
        if data.get("format") != WORLD_FORMAT:
            raise DatasetRecordError(f"not a fact-world file (format {data.get('format')!r})", where=where,
                                     hint=f"expected format {WORLD_FORMAT!r}; write one with `kme factworld world`")
        if data.get("version") != WORLD_VERSION:
            raise DatasetRecordError(f"unsupported world version {data.get('version')!r}", where=where,
                                     hint=f"this kme-factworld reads version {WORLD_VERSION}")
        subjects = []
        for i, s in enumerate(data.get("subjects", [])):
            try:
                subjects.append(Subject(name=s["name"], kind=s["kind"], facts=dict(s["facts"]),
                                        heldout=bool(s["heldout"]), split=s["split"]))
            except (KeyError, TypeError) as e:
                raise DatasetRecordError(f"subject #{i} lacks field {e}", where=where,
                                         hint="each subject needs name, kind, facts, heldout, split") from None
        return cls(seed=data["seed"], relations=data["relations"], subjects=subjects,
                   multihop=data.get("multihop", {}), shape=str(data.get("shape", "default")))


# -- generation -------------------------------------------------------------------------
def _word(rng: random.Random, taken: set[str], n_syll: tuple[int, int], endings: tuple[str, ...] = ("",),
          min_len: int = 4, max_len: int = 9) -> str:
    for _ in range(10_000):
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(*n_syll))) + rng.choice(endings)
        w = w.capitalize()
        if min_len <= len(w) <= max_len and w.lower() not in taken:
            taken.add(w.lower())
            return w
    raise RuntimeError("could not invent enough distinct words")  # pragma: no cover


def _check_templates() -> None:
    """No template may be a prefix of another relation's template (the shorter one could not
    be answered)."""
    all_t = [(r.name, t) for r in RELATIONS for t in r.templates]
    for ra, ta in all_t:
        for rb, tb in all_t:
            if ra != rb and tb.startswith(ta):
                raise ValueError(f"template {ta!r} ({ra}) is a prefix of {tb!r} ({rb})")
    for r in RELATIONS:
        if len(r.templates) != NOVEL + 1:
            raise ValueError(f"relation {r.name} needs {NOVEL + 1} templates")


def generate_world(seed: int = DEFAULT_SEED, shape: str | WorldShape = "default") -> World:
    """Invent a world from ``seed`` in ``shape`` (a name of :data:`WORLD_SHAPES` or a
    :class:`WorldShape`); the same seed and shape give the same world on every machine."""
    if isinstance(shape, str):
        if shape not in WORLD_SHAPES:
            raise DatasetRecordError(f"unknown world shape {shape!r}",
                                     hint=f"known shapes: {', '.join(WORLD_SHAPES)}")
        shape = WORLD_SHAPES[shape]
    _check_templates()
    rng = random.Random(seed)
    specs: dict[str, RelationSpec] = {r.name: r for r in RELATIONS}
    taken: set[str] = set()
    for r in RELATIONS:
        taken.update(v.lower() for v in r.vocab)

    n_countries, per_country = shape.countries, shape.cities_per_country
    if n_countries > len(specs["currency"].vocab):
        raise DatasetRecordError(f"world shape {shape.name!r} has {n_countries} countries, more than the "
                                 f"{len(specs['currency'].vocab)} currencies")
    countries = [_word(rng, taken, (2, 2), ("ia", "a", "or", "and", "ey")) for _ in range(n_countries)]
    continents = [_word(rng, taken, (2, 2), ("ica", "esia", "ora")) for _ in range(N_CONTINENTS)]
    languages = [_word(rng, taken, (1, 2), ("ish", "ese", "ic", "an")) for _ in range(N_LANGUAGES)]
    companies = [_word(rng, taken, (2, 2), ("ex", "co", "tron", "corp", "works")) for _ in range(N_COMPANIES)]
    rivers = [_word(rng, taken, (2, 2), ("a", "e", "en", "ine")) for _ in range(N_RIVERS)]
    city_words = [_word(rng, taken, (2, 2), ("", "s", "en", "ton")) for _ in range(n_countries * per_country)]
    seconds = [_word(rng, taken, (1, 2), CITY_ENDINGS, max_len=10) for _ in city_words]
    cities = [f"{w} {s}" for w, s in zip(city_words, seconds)]

    currencies = list(specs["currency"].vocab)
    rng.shuffle(currencies)
    subjects: list[Subject] = []

    # countries: capital, official language, continent
    country_cities = {c: cities[i * per_country:(i + 1) * per_country] for i, c in enumerate(countries)}
    country_currency = dict(zip(countries, currencies))
    for c in countries:
        subjects.append(Subject(c, "country", {
            "capital": rng.choice(country_cities[c]),
            "official_language": rng.choice(languages),
            "continent": rng.choice(continents),
        }, heldout=False, split="eval"))
    # cities: country, currency (the country's), river, dish
    dishes = specs["dish"].vocab
    for c in countries:
        for city in country_cities[c]:
            subjects.append(Subject(city, "city", {
                "country": c,
                "currency": country_currency[c],
                "river": rng.choice(rivers),
                "dish": rng.choice(dishes),
            }, heldout=False, split="eval"))
    # people: first and last names, seven facts each
    first_names: list[str] = []
    last_names: list[str] = []
    for _ in range(shape.people // 3):
        first_names.append(_word(rng, taken, (2, 2), ("", "a", "o", "in", "ia", "el"), max_len=8))
    for _ in range(shape.people):
        last_names.append(_word(rng, taken, (2, 2), ("son", "ov", "ski", "wick", "er", "ez", "ard"), max_len=10))
    vocab = {"employer": companies, "mother_tongue": languages}
    people = [f"{rng.choice(first_names)} {last}" for last in last_names]
    rng.shuffle(people)
    for name in people:
        facts = {"birthplace": rng.choice(cities)}
        for rel in ("employer", "mother_tongue", "instrument", "profession", "sport", "colour"):
            facts[rel] = rng.choice(vocab.get(rel) or specs[rel].vocab)
        subjects.append(Subject(name, "person", facts, heldout=False, split="eval"))

    # held-out paraphrases for a random half of each kind: their edits form the eval split
    # (paraphrase prompts never trained with the subject); the other half forms the train split
    for kind in ("person", "city", "country"):
        group = [s for s in subjects if s.kind == kind]
        order = list(range(len(group)))
        rng.shuffle(order)
        half = len(group) // 2
        for rank, i in enumerate(order):
            group[i].heldout = rank < half
            group[i].split = "eval" if rank < half else "train"

    objects = {
        "birthplace": cities, "capital": cities, "country": countries, "currency": currencies,
        "employer": companies, "mother_tongue": languages, "official_language": languages,
        "river": rivers, "continent": continents,
    }
    relations = {}
    for r in RELATIONS:
        relations[r.name] = {
            "subject_kind": r.subject_kind,
            "object_kind": r.objects if r.objects in ("city", "country") else "word",
            "templates": list(r.templates),
            "objects": sorted(objects.get(r.name, r.vocab)),
        }
    multihop = {rel: [{"template": t, "path": list(p)} for t, p in qs] for rel, qs in MULTIHOP.items()}
    return World(seed=seed, relations=relations, subjects=subjects, multihop=multihop, shape=shape.name)


def load_world(path: str | Path | None = None) -> World:
    """The shipped world (default), a world file written by :func:`generate_world`, or a
    world shape's name (``"deep"``: the world generated from seed 0 in that shape, which the
    ``factworld-deep`` model knows)."""
    p = Path(path) if path is not None else WORLD_PATH
    if isinstance(path, str) and path in WORLD_SHAPES and not p.exists():
        return generate_world(DEFAULT_SEED, path)
    if not p.exists():
        raise DatasetRecordError(f"world file {str(p)!r} does not exist",
                                 hint=f"regenerate it with `kme factworld world --out FILE`, or name a world shape "
                                      f"({', '.join(WORLD_SHAPES)})")
    try:
        data = json.loads(read_text(p, what="world file", error=DatasetRecordError))
    except json.JSONDecodeError as e:
        raise DatasetRecordError(f"invalid JSON: {e}", where=str(p)) from None
    except RecursionError:
        raise depth_error(str(p), DatasetRecordError) from None
    return World.from_json(data, where=str(p))
