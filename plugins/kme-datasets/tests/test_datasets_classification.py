"""Classification loaders: categorical targets (``choices``) and the subject mapping chosen
for sources without a natural subject."""

from __future__ import annotations

import pytest
from kme.errors import ConfigError, DatasetRecordError


def test_fever_flips_the_gold_label_and_keeps_rephrases(load):
    ds = load.make("fever", path="fever/fever-dev-kilt.jsonl")
    reqs = ds.load()
    assert [r.case_id for r in reqs] == ["910001", "910002"]
    r = reqs[0]
    assert r.prompt == "Claim: {}\nThis claim is" and r.subject == "The Velmora river flows into the Ostrel Sea."
    assert (r.target_new, r.target_true, r.choices) == ("false", "true", ["true", "false"])
    assert r.paraphrase_prompts == ["Claim: The Ostrel Sea receives the Velmora river.\nThis claim is"]
    assert r.meta["wikipedia_title"] == "Velmora River" and r.meta["alternatives"] == ["REFUTES"]
    assert (reqs[1].target_new, reqs[1].target_true) == ("true", "false")
    assert ds.skipped[0][0] == 2 and "NOT ENOUGH INFO" in ds.skipped[0][1]


def test_fever_gold_target_custom_words_and_template(load):
    reqs = load("fever", path="fever/fever-dev-kilt.jsonl", target="gold", template="{claim} Verdict:",
                label_words={"SUPPORTS": "yes", "REFUTES": "no"})
    assert [(r.text, r.target_new, r.target_true, r.choices) for r in reqs] == [
        ("The Velmora river flows into the Ostrel Sea. Verdict:", "yes", None, ["yes", "no"]),
        ("Tamsin Ockley was born in Dunmere. Verdict:", "no", None, ["yes", "no"])]


def test_fever_not_enough_info_stops_when_asked(load):
    with pytest.raises(DatasetRecordError, match=r"record 2: field 'answer' label 'NOT ENOUGH INFO'"):
        load("fever", path="fever/fever-dev-kilt.jsonl", on_unusable="error")


@pytest.mark.parametrize("template", ["no slot here", "{claim} and {claim}", "{claim} {}"])
def test_fact_check_template_is_validated(load, template):
    with pytest.raises(ConfigError, match="template"):
        load.make("fever", path="fever/fever-dev-kilt.jsonl", template=template)


def test_vitaminc_evidence_is_the_reference_text(load):
    reqs = load("vitaminc", path="vitaminc/test.jsonl")
    assert [(r.case_id, r.target_new, r.target_true) for r in reqs] == [("vc-0001", "true", None), ("vc-0002", "false", None)]
    assert reqs[0].reference_texts == ["Lake Orrin has a maximum depth of 94 metres."]
    assert reqs[0].text == "Claim: Lake Orrin is deeper than 80 metres.\nThis claim is"
    assert reqs[1].meta == {"label": "REFUTES", "page": "Lake Orrin", "revision_type": "real", "case_id": "c1"}


def test_convsent_topic_is_the_subject(load):
    reqs = load("convsent", path="knowedit/convsent/blender_test.json")
    assert [r.target_new for r in reqs] == ["positive", "negative", "positive"]  # alternate by file position
    r = reqs[1]
    assert (r.prompt, r.subject, r.choices) == ("Topic: {}\nSentiment:", "Lake Orrin", ["positive", "negative"])
    assert r.reference_texts == ["The water there is far too cold and murky."]
    assert r.meta["other_sentiment_texts"] == ["It is a beautiful place to swim."]
    assert r.paraphrase_prompts[0] == "What do you think of Lake Orrin? Sentiment:" and len(r.paraphrase_prompts) == 13
    assert r.generation_prompts == ["What do you think of Lake Orrin?", "What do you feel about Lake Orrin?",
                                    "How do you view Lake Orrin?"]
    # the alternation follows file positions, so a seeded sample keeps each topic's target
    sampled = load("convsent", path="knowedit/convsent/blender_test.json", seed=3)
    assert {r.subject: r.target_new for r in sampled} == {r.subject: r.target_new for r in reqs}


def test_scotus_csv_labels_and_names(load):
    reqs = load("scotus", path="scotus/test.csv")
    assert [r.target_new for r in reqs] == ["0", "7", "6"] and reqs[0].choices == [str(i) for i in range(11)]
    assert reqs[1].prompt == "{}\nIssue area:" and reqs[1].subject.startswith("This case concerns whether a county")
    names = [f"area {i}" for i in range(11)]
    named = load("scotus", path="scotus/test.csv", label_names=names, max_chars=60)
    assert named[1].target_new == "area 7" and len(named[1].subject) <= 60


def test_scotus_label_out_of_range(load, tmp_path):
    p = tmp_path / "test.csv"
    p.write_text("text,label\nAn opinion about ferries.,11\n")
    with pytest.raises(DatasetRecordError, match=r"record 0: field 'label' is 11, outside 0..10"):
        load("scotus", path=str(p))


def test_bias_in_bios_parquet_28_occupations(load):
    reqs = load("bias-in-bios", path="bias_in_bios/test.parquet")
    assert [r.target_new for r in reqs] == ["architect", "attorney", "yoga teacher"]
    r = reqs[0]
    assert len(r.choices) == 28 and r.choices[0] == "accountant" and "software engineer" in r.choices
    assert r.text == "She designs quiet homes with timber frames and large windows .\nThis person has the occupation of"
    assert r.meta == {"gender": 1}


def test_bias_in_bios_named_records(load, tmp_path):
    import json

    p = tmp_path / "bios.jsonl"
    p.write_text(json.dumps({"bio": "Mara is a registered nurse in a rural clinic.", "title": "nurse",
                             "name": ["Mara", "J", "Ellory"], "gender": "F"}) + "\n")
    r = load("bias-in-bios", path=str(p))[0]
    assert (r.subject, r.target_new, r.text) == (
        "Mara", "nurse", "Mara is a registered nurse in a rural clinic.\nMara has the occupation of")
