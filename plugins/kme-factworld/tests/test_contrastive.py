"""factworld-contrastive: pairs of one relation's two group objects, advantaged = the subject's
true object, neighbourhood probes outside the group, params refused with the field named."""

from __future__ import annotations

import pytest

import kme


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def _load(pm, **params):
    return list(pm.datasets.get("factworld-contrastive")(params).load())


def test_pairs_of_one_group(pm):
    reqs = _load(pm, relations=["profession"])
    from kme_factworld import load_world

    world = load_world()
    groups = {r.meta["contrastive"]["group"] for r in reqs}
    assert len(groups) == 1
    a, b = groups.pop().split(":", 1)[1].split("|")
    for r in reqs:
        s = world.subject(r.subject)
        assert r.target_true == s.facts["profession"] and {r.target_true, r.target_new} == {a, b}
        assert r.meta["contrastive"]["advantaged"] == r.target_true and r.meta["contrastive"]["goal"] == "equalise"
        assert r.paraphrase_prompts and len(r.neighborhood) == 5
        assert all(p.target not in (a, b) for p in r.neighborhood)
        assert r.meta["split"] == "eval"
    assert len(reqs) == len({r.case_id for r in reqs}) >= 20


def test_explicit_objects_limit_and_order(pm):
    reqs = _load(pm, relations=["colour"], objects=["brown", "red"], limit=4, shuffle=False)
    assert len(reqs) == 4 and all(r.meta["contrastive"]["group"] == "colour:brown|red" for r in reqs)
    assert _load(pm, relations=["colour"], seed=1) != _load(pm, relations=["colour"], seed=2)


@pytest.mark.parametrize("params, where", [
    ({"relations": ["profesion"]}, "relations"),
    ({"objects": ["brown", "red"]}, "objects"),
    ({"relations": ["colour"], "objects": ["brown", "plaid"]}, "objects"),
    ({"relations": ["colour"], "objects": ["red", "red"]}, "objects"),
    ({"relations": ["colour"], "objects": ["red"]}, "objects"),
    ({"limit": 0}, "limit"),
])
def test_bad_params_name_the_field(pm, params, where):
    with pytest.raises(kme.ConfigError, match=where):
        _load(pm, **params)
