"""factworld-private: memorised person facts declared private, with non-private probes."""

from __future__ import annotations

import pytest

import kme
from kme.errors import ConfigError
from kme_factworld.private import FactWorldPrivateDataset, build_private_requests
from kme_factworld.world import load_world


@pytest.fixture(scope="module")
def world():
    return load_world()


def test_one_request_per_person_with_the_private_fact(world):
    reqs = build_private_requests(world, ["birthplace"])
    people = world.of_kind("person")
    private_prompts = {t.format(s.name) for s in people for t in world.templates("birthplace")}
    assert len(reqs) == len(people) and len({r.subject for r in reqs}) == len(people)
    for r in reqs[:20]:
        s = world.subject(r.subject)
        assert r.target_true == r.meta["private"] == s.facts["birthplace"]
        assert r.target_new != r.target_true and r.target_new in world.objects("birthplace")
        assert r.text in [t.format(s.name) for t in world.trained_templates(s, "birthplace")]
        assert r.paraphrase_prompts and len(r.neighborhood) == 6
        assert not {p.prompt for p in r.neighborhood} & private_prompts  # non-private facts only
        assert any(p.prompt.startswith(r.subject) or r.subject in p.prompt for p in r.neighborhood)
        for o in r.meta["other_private"]:
            assert r.subject not in o["prompt"]


def test_registered_seeded_and_filtered():
    pm = kme.build_plugin_manager()
    cls = pm.datasets.get("factworld-private")
    assert cls is FactWorldPrivateDataset
    a = [r.case_id for r in cls({"limit": 5}).load()]
    assert a == [r.case_id for r in cls({"limit": 5}).load()] and len(a) == 5
    two = list(cls({"relations": ["birthplace", "employer"], "split": "eval"}).load())
    assert {r.relation for r in two} == {"birthplace", "employer"}
    assert all(r.meta["split"] == "eval" for r in two)


@pytest.mark.parametrize("rel,msg", [("capital", "not a person relation"), ("birthplce", "did you mean")])
def test_bad_relations_are_named(rel, msg):
    with pytest.raises(ConfigError, match=msg):
        list(FactWorldPrivateDataset({"relations": [rel]}).load())
