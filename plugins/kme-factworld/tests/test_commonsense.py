import pytest

from kme import ConfigError, build_plugin_manager
from kme_factworld.commonsense import STATEMENTS


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


def _load(pm, **params):
    return list(pm.datasets.get("factworld-commonsense")(params).load())


def test_statements_have_subject_verb_and_object_in_the_prompt(pm):
    reqs = _load(pm)
    assert len(reqs) == 90 and {r.relation for r in reqs} == set(STATEMENTS)
    for r in reqs:
        text = r.text
        i_s, i_v, i_o = text.index(r.subject), text.index(r.meta["verb"]), text.rindex(r.meta["object"])
        assert i_s < i_v < i_o, text  # subject, verb, object in order, all before the completion
        assert r.target_new != r.target_true
        assert r.meta["statement"] == f"{text} {r.target_true}"
        assert len(r.paraphrase_prompts) == 2 and len(r.neighborhood) == 5
        for p, spans in zip(r.paraphrase_prompts, r.meta["paraphrase_spans"]):
            assert r.subject in p and spans["verb"] in p and spans["object"] in p
        assert all(r.subject not in n.prompt for n in r.neighborhood)


def test_deterministic_and_splits_disjoint(pm):
    a, b = _load(pm, seed=3), _load(pm, seed=3)
    assert [r.model_dump() for r in a] == [r.model_dump() for r in b]
    train = _load(pm, split="train")
    assert not {r.subject for r in a} & {r.subject for r in train}
    assert len(_load(pm, split="all")) == len(a) + len(train)
    assert {r.relation for r in _load(pm, relations=["river"], limit=4)} == {"river"}


def test_unknown_relation_names_the_field(pm):
    with pytest.raises(ConfigError, match="no commonsense statements for relation 'rivers'.*river"):
        _load(pm, relations=["rivers"])
