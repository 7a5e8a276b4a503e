"""crows-pairs: rows split at the shared prefix into advantaged (sent_more) and disadvantaged
(sent_less) completions; rows without a shared first word are skipped or stop the load."""

from __future__ import annotations

import pytest
from kme.errors import DatasetRecordError

from kme_datasets.crows import split_pair

PATH = "crows/crows_pairs_anonymized.csv"


def test_pairs_split_at_the_shared_prefix(load):
    ds = load.make("crows-pairs", path=PATH)
    reqs = ds.load()
    assert [r.case_id for r in reqs] == ["0", "1", "3"]
    r = reqs[0]
    assert r.text == "The new neighbour from" and r.subject == "The"
    assert (r.target_true, r.target_new) == ("Velmora could not cook at all.", "Ostrel could not cook at all.")
    assert r.meta["bias_type"] == "nationality" and r.meta["stereo_antistereo"] == "stereo"
    assert (reqs[1].target_true, reqs[1].target_new) == ("late.", "early.")
    assert reqs[2].target_true == "{ } nothing." and reqs[2].text == "The clerk said"
    assert ds.skipped[0][0] == 2 and "share no leading word" in ds.skipped[0][1]


def test_a_row_without_shared_context_stops_when_asked(load):
    with pytest.raises(DatasetRecordError, match="record 2"):
        load("crows-pairs", path=PATH, on_unusable="error")


def test_split_pair():
    assert split_pair("a b c", "a b d") == ("a b", "c", "d")
    assert split_pair("x b", "y b") is None and split_pair("a b", "a b") is None
