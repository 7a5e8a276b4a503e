"""PEP3k / 20Q in MEMIT-CSK's released shapes (fixtures: invented statements)."""

from __future__ import annotations

import pytest
from kme import DatasetRecordError


def test_edit_file_keeps_labels_and_spans(load):
    reqs = load("pep3k", path="memit_csk/edit_subset.json")
    r = reqs[1]
    assert (r.case_id, r.prompt, r.subject, r.target_new, r.target_true) == (
        1, "Feather crushes anvil:", "Feather", "False", "True")
    assert r.meta == {"verb": "crushes", "object": "anvil"} and r.choices == ["False", "True"]


def test_annotated_set_maps_labels_and_skips_statements_without_an_object(load):
    ds = load.make("20q", path="memit_csk/svo_annotated.json")
    reqs = ds.load()
    assert [(r.case_id, r.prompt, r.target_new, r.target_true) for r in reqs] == [
        (0, "A goat climbs hill:", "True", "False"), (2, "the spoon stirs tea:", "True", "False")]
    assert ds.skipped and ds.skipped[0][0] == 1
    with pytest.raises(DatasetRecordError, match="record 1: field 'object'"):
        load("20q", path="memit_csk/svo_annotated.json", on_unusable="error")


def test_probe_set_maps_affected_and_unaffected_statements(load):
    (r,) = load("pep3k", path="memit_csk/probe_set.json")
    assert (r.case_id, r.prompt, r.target_new, r.target_true) == (4, "Candles melt glaciers:", "False", "True")
    assert r.paraphrase_prompts == ["A candle can melt a glacier:"]
    assert [(q.prompt, q.target_new, q.meta["probe"]) for q in r.portability] == [
        ("Tapers melt glaciers:", "False", "affected_neighborhood_subject"),
        ("Candles thaw glaciers:", "False", "affected_neighborhood_verb"),
        ("Candles melt icebergs:", "False", "affected_neighborhood_object"),
        ("Candles give little heat:", "True", "affected_reasoning")]
    assert r.meta["unaffected_neighborhood"] == ["Volcanoes melt glaciers:", "Candles melt wax:"]


def test_bad_label_names_the_field(load, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"prompt": "Ants lift leaves", "label": 2, "subject": "Ants", "verb": "lift", "object": "leaves"}]')
    with pytest.raises(DatasetRecordError, match="label.*must be 0, 1, 'True' or 'False'"):
        load("pep3k", path=str(bad))
