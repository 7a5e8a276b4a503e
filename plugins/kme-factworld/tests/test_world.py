"""The world is a pure function of its seed, and the shipped file is that function's output."""

from __future__ import annotations

import json

import pytest

from kme.errors import DatasetRecordError
from kme_factworld.text import corpus, doc_text, episode, fact_documents
from kme_factworld.vocab import RELATIONS
from kme_factworld.world import WORLD_PATH, World, generate_world, load_world


def test_generation_is_deterministic_and_matches_shipped_file():
    a, b = generate_world(0), generate_world(0)
    assert a.dumps() == b.dumps()
    assert WORLD_PATH.read_text(encoding="utf-8") == a.dumps(), \
        "shipped world.json is stale: regenerate with `kme factworld world --out <path of world.json>`"
    assert generate_world(1).dumps() != a.dumps()


def test_world_shape():
    w = load_world()
    kinds = {k: len(w.of_kind(k)) for k in ("person", "city", "country")}
    assert kinds["person"] >= 200 and kinds["city"] >= 50 and kinds["country"] >= 10
    assert len(w.relations) >= 10
    for s in w.subjects:
        assert set(s.facts) == set(w.relation_names(s.kind))
        for rel, obj in s.facts.items():
            assert obj in w.objects(rel)
        if s.kind in ("person", "city"):
            assert len(s.name.split()) >= 2, "people and cities have multi-word names"
    # held-out paraphrases for half of each kind
    for kind, n in kinds.items():
        assert sum(s.heldout for s in w.of_kind(kind)) == n // 2


def test_a_subjects_last_word_is_its_own():
    """Editors read a subject at its last token: no two subjects may share it."""
    w = load_world()
    last = [s.name.split()[-1] for s in w.subjects]
    assert len(set(last)) == len(last)
    firsts = [s.name.split()[0] for s in w.of_kind("person")]
    assert len(set(firsts)) < len(firsts) / 2  # first names are shared: a name is not one token


def test_templates_roles_and_no_prefix_conflicts():
    w = load_world()
    for r in RELATIONS:
        assert 6 <= len(r.templates) <= 8 and all(t.count("{}") == 1 for t in r.templates)
    subj = next(s for s in w.subjects if s.heldout)
    for rel in subj.facts:
        trained, held = w.trained_templates(subj, rel), w.heldout_templates(subj, rel)
        assert len(held) >= 2 and not set(held) & set(trained)
        assert w.novel_template(rel) not in trained + held
    every = [(r.name, t) for r in RELATIONS for t in r.templates]
    for ra, ta in every:
        assert not any(ra != rb and tb.startswith(ta) for rb, tb in every)


def test_two_hop_chains_and_consistency():
    w = load_world()
    for p in w.of_kind("person"):
        city = w.subject(p.facts["birthplace"])
        country = w.subject(city.facts["country"])
        assert w.follow(p.name, ["birthplace", "country", "continent"]) == country.facts["continent"]
    # a country's cities share its currency; its capital is one of its cities
    for c in w.of_kind("country"):
        cities = [x for x in w.of_kind("city") if x.facts["country"] == c.name]
        assert len({x.facts["currency"] for x in cities}) == 1
        assert c.facts["capital"] in {x.name for x in cities}


def test_heldout_phrasings_never_appear_in_training_text_of_their_subject():
    import random

    w = load_world()
    rng = random.Random(0)
    text = "\n".join(doc_text(d) for d in fact_documents(w, rng))
    text += "\n".join(doc_text(episode(w, rng)) for _ in range(200))
    text = text.lower()  # clauses lower-case a template's first letter
    for s in [x for x in w.subjects if x.heldout][:40]:
        for rel in s.facts:
            for t in w.heldout_templates(s, rel) + [w.novel_template(rel)]:
                assert t.format(s.name).lower() not in text
            assert w.trained_templates(s, rel)[0].format(s.name).lower() in text


def test_corpus_is_deterministic_text():
    a, b = corpus(seed=0), corpus(seed=0)
    assert a == b and len(a) > 5000 and all(isinstance(x, str) and x for x in a)
    assert corpus(seed=1) != a


def test_bad_world_file_is_reported(tmp_path):
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DatasetRecordError, match="not a fact-world file"):
        load_world(bad)
    bad.write_text("{not json")
    with pytest.raises(DatasetRecordError, match="invalid JSON"):
        load_world(bad)
    with pytest.raises(DatasetRecordError, match="does not exist"):
        load_world(tmp_path / "missing.json")
    data = generate_world(0).to_json()
    del data["subjects"][3]["facts"]
    with pytest.raises(DatasetRecordError, match="subject #3"):
        World.from_json(data)


def test_a_world_named_by_its_shape_or_a_clear_error():
    assert load_world("deep").dumps() == generate_world(0, "deep").dumps()
    with pytest.raises(DatasetRecordError, match="world file 'huge' does not exist") as e:
        load_world("huge")
    assert "name a world shape (default, deep)" in str(e.value)
    import kme

    pm = kme.build_plugin_manager()
    reqs = list(pm.datasets.get("factworld-deep")({"distinct_subjects": True}).load())
    assert len(reqs) >= 1000 and len({r.subject for r in reqs}) == len(reqs)
    assert reqs[0].meta["world_seed"] == 0 and all(r.meta["split"] == "eval" for r in reqs)
    first = next(iter(pm.datasets.get("factworld")({}).load()))
    assert first.subject in {s.name for s in load_world().subjects}
    for name in ("factworld-deep-commonsense", "factworld-deep-private", "factworld-deep-contrastive"):
        assert next(iter(pm.datasets.get(name)({}).load())).case_id
    with pytest.raises(kme.ConfigError, match="dataset factworld-deep params.relations"):
        pm.datasets.get("factworld-deep")({"relations": ["birthplce"]}).load()


def test_deep_corpora_and_the_one_that_never_mentions_an_eval_subject():
    import re

    import kme
    from kme_factworld.deep import deep_corpus

    w = load_world("deep")
    lines, train_only = deep_corpus(), deep_corpus(only_split="train")
    assert lines == deep_corpus() and 0 < len(train_only) < len(lines)
    eval_last = {s.name.split()[-1] for s in w.subjects if s.split == "eval"}
    assert any(eval_last.intersection(re.findall(r"[A-Za-z]+", line)) for line in lines[:100])
    assert not any(eval_last.intersection(re.findall(r"[A-Za-z]+", line)) for line in train_only)
    pm = kme.build_plugin_manager()
    assert "factworld-deep" in pm.corpora and "factworld-deep-train-split" in pm.corpora
