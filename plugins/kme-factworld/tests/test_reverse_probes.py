"""Reverse questions (BIRD's reversibility): only for capital edits, opt-in, answered by the
edited subject after the edit and by the new city's own country before it."""

from __future__ import annotations

import pytest

from kme_factworld.dataset import REVERSE, FactWorldDataset, build_requests
from kme_factworld.world import load_world


@pytest.fixture(scope="module")
def world():
    return load_world()


def test_reverse_questions_of_capital_edits(world):
    reqs = build_requests(world, "all", reverse=True)
    seen = 0
    for r in reqs:
        rev = [q for q in r.portability if q.kind == "reverse"]
        if r.relation != "capital":
            assert rev == []
            continue
        seen += 1
        templates, _ = REVERSE["capital"]
        assert [q.prompt for q in rev] == [t.format(r.target_new) for t in templates]
        city_country = world.subject(r.target_new).facts["country"]
        for q in rev:
            assert q.target_new == r.subject and q.meta == {"inverse_of": "capital"}
            assert q.target_true == (None if city_country == r.subject else city_country)
    assert seen == len(world.of_kind("country"))


def test_capital_has_a_unique_inverse_in_the_world(world):
    capitals = [s.facts["capital"] for s in world.of_kind("country")]
    assert len(set(capitals)) == len(capitals)
    for s in world.of_kind("country"):  # a capital lies in its own country: the reverse's answer before the edit
        assert world.subject(s.facts["capital"]).facts["country"] == s.name


def test_off_by_default_and_otherwise_the_same_requests(world):
    plain = build_requests(world, "eval")
    with_rev = build_requests(world, "eval", reverse=True)
    assert all(q.kind != "reverse" for r in plain for q in r.portability)
    for a, b in zip(plain, with_rev):
        assert a.model_copy(update={"portability": []}) == b.model_copy(update={"portability": []})
        assert a.portability == [q for q in b.portability if q.kind != "reverse"]
    ds = list(FactWorldDataset({"relations": ["capital"], "reverse_probes": True}).load())
    assert ds and all(sum(q.kind == "reverse" for q in r.portability) == 2 for r in ds)
