"""Common options: limit, seeded sampling, determinism, split directories, train files,
and the hub path (offline here: it must fail fast with a hint to use a local file)."""

from __future__ import annotations

import json

import pytest
from kme.errors import ConfigError, KmeError


def ids(reqs):
    return [r.case_id for r in reqs]


def test_limit_keeps_file_order_without_seed(load):
    assert ids(load("counterfact", path="counterfact.json", limit=2)) == [0, 1]
    assert ids(load("counterfact", path="counterfact.json")) == [0, 1, 2]


@pytest.fixture
def big_counterfact(tmp_path, fixtures):
    recs = json.loads((fixtures / "counterfact.json").read_text())
    out = []
    for i in range(30):
        r = json.loads(json.dumps(recs[i % 3]))
        r["case_id"] = i
        out.append(r)
    p = tmp_path / "cf30.json"
    p.write_text(json.dumps(out))
    return str(p)


def test_seeded_sampling_is_reproducible_and_seed_dependent(load, big_counterfact):
    a = ids(load("counterfact", path=big_counterfact, limit=10, seed=1))
    b = ids(load("counterfact", path=big_counterfact, limit=10, seed=1))
    c = ids(load("counterfact", path=big_counterfact, limit=10, seed=2))
    assert a == b and len(set(a)) == 10
    assert a != c and a != list(range(10))
    # a larger limit with the same seed extends the same order
    assert ids(load("counterfact", path=big_counterfact, limit=15, seed=1))[:10] == a
    assert sorted(ids(load("counterfact", path=big_counterfact, seed=1))) == list(range(30))


def test_loading_twice_gives_identical_requests(load):
    assert load("mquake", path="MQuAKE-CF-3k-v2.json") == load("mquake", path="MQuAKE-CF-3k-v2.json")


def test_limit_counts_source_records_not_requests(load):
    assert ids(load("mquake", path="MQuAKE-CF-3k-v2.json", limit=1)) == ["1.0", "1.1"]


def test_directory_path_picks_the_split_file(load, fixtures):
    assert len(load("knowedit", path="knowedit/wiki_recent", split="test", subset="wiki_recent")) == 2
    with pytest.raises(ConfigError, match="split 'train' matches 0 files"):
        load("knowedit", path="knowedit/wiki_recent", split="train", subset="wiki_recent")


def test_directory_with_several_files_needs_a_split(load, tmp_path, fixtures):
    for n in ("a_test.json", "a_train.json"):
        (tmp_path / n).write_text((fixtures / "counterfact.json").read_text())
    with pytest.raises(ConfigError, match="several data files"):
        load("counterfact", path=str(tmp_path))
    assert len(load("counterfact", path=str(tmp_path), split="train")) == 3


def test_train_requests_come_from_train_path(load):
    ds = load.make("zsre", path="zsre_mend_eval.json", train_path="knowedit/ZsRE/ZsRE-test-all.json", limit=1)
    assert ids(ds.load()) == [0]
    assert [r.subject for r in ds.train_requests()] == ["Quillonia", "Marek Oddny"]
    assert load.make("zsre", path="zsre_mend_eval.json").train_requests() == []


@pytest.mark.parametrize("opts,message", [
    ({}, "exactly one of `path`"),
    ({"path": "a.json", "hub_id": "x/y"}, "exactly one of `path`"),
    ({"path": "counterfact.json", "limit": 0}, "limit"),
    ({"path": "counterfact.json", "lmit": 3}, "lmit: unknown field"),
])
def test_bad_options_are_config_errors(load, opts, message):
    with pytest.raises(ConfigError, match=message):
        load.make("counterfact", **opts)


def test_lama_datasets_need_templates(load):
    with pytest.raises(ConfigError, match="relations_path"):
        load.make("trex", path="lama/TREx/P19.jsonl")
    with pytest.raises(ConfigError, match="patterns_path"):
        load.make("pararel", path="pararel/trex_lms_vocab/P19.jsonl")


def test_knowedit_needs_a_subset(load):
    with pytest.raises(ConfigError, match="subset"):
        load.make("knowedit", path="knowedit/wiki_recent/recent_test.json")


def test_missing_file(load):
    with pytest.raises(ConfigError, match="does not exist"):
        load("counterfact", path="nope.json")


def test_unreachable_hub_id_fails_fast_with_a_local_file_hint(load, monkeypatch):
    import time

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(KmeError) as e:
        load("counterfact", hub_id="someone/counterfact-copy", split="train")
    assert time.perf_counter() - t0 < 30
    text = str(e.value)
    assert "cannot load 'someone/counterfact-copy' split 'train' from the Hugging Face hub" in text
    assert "offline mode" in text
    assert "pass it with `path:` instead of `hub_id:`" in text and "counterfact.json" in text


def test_hub_path_through_datasets_load_dataset(load, fixtures, tmp_path, monkeypatch):
    """The hub code path (datasets.load_dataset -> rows) gives the same requests as the file;
    the packaged "json" builder reads a local file, so this runs offline."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    via_hub = load("mquake", hub_id="json", hub_data_files=str(fixtures / "MQuAKE-CF-3k-v2.json"), split="train")
    assert via_hub == load("mquake", path="MQuAKE-CF-3k-v2.json")
