"""The factworld dataset's requests: CounterFact's shape, valid, and consistent with the world."""

from __future__ import annotations

import pytest

import kme
from kme.errors import ConfigError
from kme_factworld.dataset import FactWorldDataset, build_requests
from kme_factworld.world import load_world


@pytest.fixture(scope="module")
def world():
    return load_world()


@pytest.fixture(scope="module")
def eval_requests(world):
    return build_requests(world, "eval")


def test_registered_through_entry_point():
    pm = kme.build_plugin_manager()
    assert pm.datasets.get("factworld") is FactWorldDataset
    assert "factworld" in pm.aliases
    ds = pm.datasets.get("factworld")({"limit": 7})
    assert len(list(ds.load())) == 7


def test_every_request_validates_and_is_counterfactual(world, eval_requests):
    assert len(eval_requests) > 500
    for r in eval_requests:
        again = kme.EditRequest.model_validate(r.model_dump(mode="json"))
        assert again == r
        s = world.subject(r.subject)
        assert r.target_true == s.facts[r.relation]
        assert r.target_new != r.target_true and r.target_new in world.objects(r.relation)
        assert r.text == world.templates(r.relation)[0].format(r.subject)
        assert r.paraphrase_prompts == [t.format(r.subject) for t in world.heldout_templates(s, r.relation)]
        assert len(r.generation_prompts) >= 1 and all(r.subject in p for p in r.generation_prompts)


def test_neighbourhood_uses_other_subjects_with_the_old_object(world, eval_requests):
    shared = 0
    for r in eval_requests:
        assert len(r.neighborhood) == 5
        peers = [x for x in world.of_kind(world.subject(r.subject).kind) if x.name != r.subject]
        n_same = sum(x.facts[r.relation] == r.target_true for x in peers)
        names = []
        for probe in r.neighborhood:
            other = next(x for x in peers if x.name in probe.prompt)
            assert r.subject not in probe.prompt
            assert probe.target == other.facts[r.relation] != r.target_new
            names.append(other.name)
        assert len(set(names)) == len(names)
        # as many as exist share the old object (CounterFact's neighbourhood)
        k = sum(world.subject(n).facts[r.relation] == r.target_true for n in names)
        assert k == min(5, n_same) == r.meta["neighbours_share_old_object"]
        shared += k == 5
    assert shared / len(eval_requests) > 0.8


def test_multihop_answers_follow_the_edit(world, eval_requests):
    kinds = {}
    for r in eval_requests:
        for q in r.portability:
            assert q.kind == "multihop" and r.subject in q.prompt
            assert q.target_true and q.target_new
            kinds[r.relation] = kinds.get(r.relation, 0) + 1
        if r.relation == "birthplace":
            q = r.portability[0]  # the country of the (new) birthplace
            assert q.target_new == world.subject(r.target_new).facts["country"]
            assert q.target_true == world.subject(r.target_true).facts["country"]
    assert {"birthplace", "country", "capital"} <= set(kinds)


def test_split_all_is_eval_plus_train():
    ev = list(FactWorldDataset({"split": "eval"}).load())
    tr = list(FactWorldDataset({"split": "train"}).load())
    al = list(FactWorldDataset({"split": "all"}).load())
    assert len(al) == len(ev) + len(tr) > 1000
    assert {r.case_id for r in al} == {r.case_id for r in ev} | {r.case_id for r in tr}
    with pytest.raises(ConfigError, match="train split"):
        FactWorldDataset({"split": "all"}).train_requests()


def test_distinct_subjects_keeps_one_request_per_subject():
    full = list(FactWorldDataset({"split": "all"}).load())
    one = list(FactWorldDataset({"split": "all", "distinct_subjects": True}).load())
    assert len({r.subject for r in one}) == len(one) == len({r.subject for r in full})
    assert one == [r for r in full if r in one]  # the seeded order is kept


def test_train_and_eval_splits_are_disjoint(world):
    ds = FactWorldDataset({})
    ev, tr = list(ds.load()), list(ds.train_requests())
    assert len(tr) > 300
    assert not {r.subject for r in ev} & {r.subject for r in tr}
    assert all(world.subject(r.subject).heldout for r in ev)
    with pytest.raises(ConfigError, match="train split"):
        FactWorldDataset({"split": "train"}).train_requests()


def test_params_filter_limit_and_seed():
    a = list(FactWorldDataset({"limit": 30, "seed": 0}).load())
    assert len(a) == 30 and a == list(FactWorldDataset({"limit": 30, "seed": 0}).load())
    b = list(FactWorldDataset({"limit": 30, "seed": 1}).load())
    assert [r.case_id for r in a] != [r.case_id for r in b]
    only = list(FactWorldDataset({"relations": ["capital", "sport"]}).load())
    assert {r.relation for r in only} == {"capital", "sport"}
    cities = list(FactWorldDataset({"subject_kinds": ["city"]}).load())
    assert {r.meta["subject_kind"] for r in cities} == {"city"}


def test_bad_params_are_clear_errors():
    with pytest.raises(ConfigError, match="did you mean 'capital'"):
        list(FactWorldDataset({"relations": ["capitol"]}).load())
    with pytest.raises(ConfigError, match="unknown field"):
        FactWorldDataset({"limt": 3})
    with pytest.raises(ConfigError, match="select no request"):
        list(FactWorldDataset({"relations": ["capital"], "subject_kinds": ["person"]}).load())
