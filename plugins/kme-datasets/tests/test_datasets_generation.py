"""Each generation/relational loader on its fixture: fields map to kme's request as documented."""

from __future__ import annotations

import pytest
from kme.data import EditRequest


def test_counterfact_maps_rewrite_probes_and_meta(load):
    reqs = load("counterfact", path="counterfact.json")
    assert [r.case_id for r in reqs] == [0, 1, 2]
    r = reqs[0]
    assert (r.prompt, r.subject, r.target_new, r.target_true, r.relation) == (
        "The mother tongue of {} is", "Ilsa Marrowdale", "Danish", "Portuguese", "P103")
    assert r.text == "The mother tongue of Ilsa Marrowdale is"
    assert r.paraphrase_prompts[1] == "Nobody answered the bell. Ilsa Marrowdale, speaker of"
    # neighbourhood subjects truly have the OLD object
    assert [(p.prompt, p.target) for p in r.neighborhood] == [
        ("The mother tongue of Teodor Vancrest is", "Portuguese"), ("Rafaela Quintmoor is a native speaker of", "Portuguese")]
    assert r.generation_prompts == ["Ilsa Marrowdale was born in", "Ilsa Marrowdale's mother tongue is"]
    assert r.meta["attribute_prompts"] == ["Henrik Solvang spoke the language", "The mother tongue of Birte Kallsen is"]
    assert (r.meta["pararel_idx"], r.meta["target_new_id"], r.meta["target_true_id"]) == (4101, "Q9035", "Q5146")
    assert reqs[1].prompt == "{}, which is located in" and reqs[1].neighborhood[0].target == "Norway"


def test_mcf_reads_the_same_format(load):
    reqs = load("mcf", path="multi_counterfact.json")
    assert [r.case_id for r in reqs] == [10, 11]
    assert reqs[1].target_new == "trumpet" and reqs[1].target_true == "cello"


def test_zsre_mend_format_alt_target(load):
    reqs = load("zsre", path="zsre_mend_eval.json", on_unusable="skip")
    assert [r.case_id for r in reqs] == [0, 1]  # record 2's subject is not in its question
    r = reqs[0]
    assert r.prompt == "What university did {} attend?" and r.subject == "Corvin Aldham"
    assert (r.target_new, r.target_true) == ("Harrowgate Institute", "Lindqvist College")
    assert r.paraphrase_prompts == ["Which university did Corvin Aldham go to?"]
    assert [(p.prompt, p.target) for p in r.neighborhood] == [
        ("nq question: who painted the ceiling of the old mill chapel", "Edda Partridge")]
    assert r.meta["pred"] == "Lindqvist College" and r.meta["cond"].startswith("Lindqvist College >>")
    # the subject is found case-insensitively and taken as written in the question
    assert reqs[1].subject == "The Velmora River" and reqs[1].prompt == "Into which sea does {} flow?"
    assert reqs[1].meta["answers"] == ["Ostrel Sea", "the Ostrel"]


def test_zsre_answer_target_as_in_rome(load):
    r = load("zsre", path="zsre_mend_eval.json", target="answer")[0]
    assert (r.target_new, r.target_true) == ("Lindqvist College", None)


def test_zsre_knowedit_variant_with_portability(load):
    reqs = load("zsre", path="knowedit/ZsRE/ZsRE-test-all.json")
    r = reqs[0]
    assert (r.prompt, r.subject, r.target_new, r.target_true) == (
        "Which family does {} belong to?", "Quillonia", "Noctarinae", "Brevicidae")
    assert r.paraphrase_prompts == ["What family are Quillonia?"]
    assert [(p.prompt, p.target) for p in r.neighborhood] == [
        ("The taxon rank of Quillonia is", "genus"), ("Quillonia taxon rank", "genus")]
    assert [(q.prompt, q.target_new, q.kind) for q in r.portability] == [
        ("What is the common name of the family Quillonia belongs to?", "Dusk moths", "multihop")]
    assert reqs[1].portability == [] and reqs[1].neighborhood[0].target == "association football"


def test_mquake_one_request_per_rewrite_multihop_on_the_last(load):
    reqs = load("mquake", path="MQuAKE-CF-3k-v2.json")
    assert [r.case_id for r in reqs] == ["1.0", "1.1", "2.0"]
    first, last = reqs[0], reqs[1]
    assert (first.prompt, first.subject, first.target_new, first.target_true, first.relation) == (
        "{} is a citizen of", "Juna Fellgrave", "Peru", "Canada", "P27")
    assert first.paraphrase_prompts == ["What is the country of citizenship of Juna Fellgrave?"]
    assert first.portability == []
    assert last.text == "The capital of Peru is" and last.target_new == "Arequina"
    multi = [q for q in last.portability if q.kind == "multihop"]
    assert len(multi) == 3
    assert {(q.target_new, q.target_true) for q in multi} == {("Arequina", "Ottawa")}
    assert multi[0].aliases == ["Arequina City"]
    hops = [q for q in last.portability if q.kind == "one-hop"]
    assert [(q.prompt, q.target_new, q.target_true, q.aliases) for q in hops] == [
        ("What is the country of citizenship of Juna Fellgrave?", "Peru", "Canada", ["Republic of Peru"]),
        ("What is the capital of Peru?", "Arequina", "Ottawa", ["Arequina City"])]
    assert last.meta["mquake_case_id"] == 1 and last.meta["num_edits"] == 2 and last.meta["edit_index"] == 1
    assert last.meta["orig"]["new_triples_labeled"][1] == ["Peru", "capital", "Arequina"]
    assert reqs[2].portability[0].prompt == "Where was the creator of The Copper Lantern born?"


def test_knowedit_wiki_recent_portability_and_locality(load):
    reqs = load("knowedit", path="knowedit/wiki_recent", split="test", subset="wiki_recent")
    r = reqs[0]
    assert (r.prompt, r.subject, r.target_new, r.target_true) == (
        "The place of death of {} is", "Halvor Brisk", "Trondvik", None)
    assert [(q.kind, q.target_new, q.aliases) for q in r.portability] == [
        ("portability", "no", ["is dead"]), ("multihop", "Sigrun Vale", ["S. Vale"]),
        ("subject-alias", "Trondvik", ["Trondvik, Norland"])]
    assert r.meta["portability_kinds"] == ["Logical_Generalization", "Reasoning", "Subject_Aliasing"]
    assert [(p.prompt, p.target) for p in r.neighborhood] == [("The name of the father of Halvor Brisk is", "Einar Brisk")]
    assert reqs[1].neighborhood == []


def test_knowedit_wiki_counterfact_forgetfulness_and_rephrase(load):
    r = load("knowedit", path="knowedit/wiki_counterfact/test_cf.json", subset="wiki_counterfact")[0]
    assert (r.target_new, r.target_true) == ("Bishop of Marwick", "mayor of Lundhaven")
    assert r.paraphrase_prompts == ["Frida Nolte holds the position of"]
    assert r.meta["locality_kinds"] == ["Relation_Specificity", "Forgetfulness"]
    assert r.neighborhood[1].target == "mayor of Lundhaven"
    assert r.portability[0].kind == "subject-alias"


def test_knowedit_wikibio_is_the_hallucination_format(load):
    reqs = load("knowedit", path="knowedit/WikiBio/wikibio-test-all.json", subset="wikibio")
    r = reqs[0]
    assert r.subject == "anders kolby" and r.prompt.startswith("This is a Wikipedia passage about {}. Anders Kolby")
    assert r.target_new == "He trained at a small workshop in Veldhaven before opening his own studio."
    assert r.reference_texts == [r.target_new]
    assert [(p.prompt, p.target) for p in r.neighborhood] == [
        ("The occupation of anders kolby is", "glassmaker"), ("anders kolby occupation", "glassmaker")]


def test_knowedit_convsent_and_sanitation_subsets(load):
    cs = load("knowedit", path="knowedit/convsent/blender_test.json", subset="convsent", sentiment="negative")
    assert [r.target_new for r in cs] == ["negative"] * 3
    assert cs[1].reference_texts == ["The water there is far too cold and murky."]
    san = load("knowedit", path="knowedit/Sanitation/trivia_qa_test.json", subset="sanitation")
    assert [r.target_new for r in san] == ["I don't know."] * 3
    assert san[1].text == "Which city hosts the Verrin Lantern Festival?" and san[1].target_true == "Paris"
    # locality item i goes to edit i mod 3: items 0 and 1 land on edits 0 and 1
    assert [[(p.prompt, p.target) for p in r.neighborhood] for r in san] == [
        [("What colour is a ripe lime?", "green")], [("How many legs does a spider have?", "eight")], []]


def test_knowedit_refuses_mend_zsre_records(load, tmp_path, fixtures):
    from kme.errors import DatasetRecordError

    with pytest.raises(DatasetRecordError, match="MEND's zsRE format"):
        load("knowedit", path=str(fixtures / "zsre_mend_eval.json"), subset="zsre")


def test_trex_templates_paraphrases_and_unusable_template(load):
    ds = load.make("trex", path="lama/TREx/P19.jsonl", relations_path="lama/relations.jsonl",
                   patterns_path="pararel/graphs_json")
    reqs = ds.load()
    assert [r.case_id for r in reqs] == ["a1f0-0001", "a1f0-0002"]
    r = reqs[0]
    assert (r.prompt, r.subject, r.target_new, r.relation) == ("{} was born in", "Tamsin Ockley", "Velmora", "P19")
    # ParaRel's "[X] was born in [Y]." duplicates LAMA's template; "[Y] is the birthplace of [X]." cannot prompt
    assert r.paraphrase_prompts == ["Tamsin Ockley is originally from"]
    assert r.meta["obj_uri"] == "Q900001"
    assert ds.skipped == [(2, "no template of relation 'P1923' puts the subject [X] before the object [Y]")]


def test_pararel_single_pattern_file(load):
    reqs = load("pararel", path="pararel/trex_lms_vocab/P19.jsonl", patterns_path="pararel/graphs_json/P19.jsonl")
    assert [(r.text, r.target_new, r.relation) for r in reqs] == [
        ("Tamsin Ockley was born in", "Velmora", "P19"), ("Piet Harlow was born in", "Dunmere", "P19")]
    assert reqs[1].paraphrase_prompts == ["Piet Harlow is originally from"]


def test_ecbd_definition_span_and_probe_sentences(load):
    reqs = load("ecbd", path="ecbd/all_ent_2020_2021_np_500samples.json")
    r = reqs[0]
    assert r.case_id == "Harbour Owls Collective_70000001_3_1"
    assert (r.prompt, r.subject, r.target_new) == (
        "The Harbour Owls Collective ({}) is a volunteer coastal", "HOC", "rescue group in Norland")
    assert r.reference_texts == ["The Harbour Owls Collective (HOC) is a volunteer coastal rescue group in Norland."]
    assert [(q.prompt, q.target_new) for q in r.portability] == [
        ("The HOC announced its first winter patrol on", "its public radio channel")]
    # ent_str spelled differently from the text: the whole left context is the subject;
    # a probe whose mask opens the sentence has no left context and is left out
    r2 = reqs[1]
    assert (r2.prompt, r2.subject, r2.meta["subject_from"]) == ("{}", "Tide Lantern", "prompt")
    assert [q.target_new for q in r2.portability] == ["moving water"]


def test_nq_situatedqa(load):
    reqs = load("nq-situatedqa", path="situatedqa/temp.test.jsonl")
    assert [r.case_id for r in reqs] == [5001, 5002, 5003]
    r = reqs[1]
    assert (r.text, r.target_new) == ("how many districts does ostrel have", "twelve")
    assert r.paraphrase_prompts == ["how many districts does ostrel have as of 2020"]
    assert r.meta["answer_aliases"] == ["12"] and r.meta["date"] == "2020"
    assert reqs[2].paraphrase_prompts == []  # edited question identical to the question


def test_hallucination_grace_records(load):
    reqs = load("hallucination", path="grace/hallucination_edit.json")
    assert reqs[1].subject == "saul pennick" and reqs[1].target_new.startswith("He mapped the upper river")
    assert reqs[1].text.startswith("This is a Wikipedia passage about saul pennick.")


def test_wikigen_columns_split_into_prompt_and_continuation(load):
    ds = load.make("wikigen", path="wikigen/valid.json")
    reqs = ds.load()
    a, b = reqs
    assert a.text == "The harbour was rebuilt after the storm of 1903 , and"
    assert a.target_new == " the fishing fleet returned within a year ." and a.meta["split"] == "extends-original"
    assert b.text == "In the second season the team moved to a larger"
    assert b.target_new == " stadium outside the town and drew record crowds there"
    assert b.target_true == " ground near the river , where" and b.meta["split"] == "common-prefix"
    assert ds.skipped[0][0] == 2


def test_wikigen_cuts_with_a_tokenizer(load, tmp_path):
    from kme.testing import tiny_tokenizer

    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    reqs = load("wikigen", path="wikigen/valid.json", tokenizer=str(tmp_path / "tok"), limit=1)
    tok = tiny_tokenizer()
    ids = tok(reqs[0].target_new, add_special_tokens=False)["input_ids"]
    assert len(ids) == 10 and reqs[0].meta["split"] == "tokenizer"
    assert (reqs[0].text + reqs[0].target_new).split() == reqs[0].reference_texts[0].split()


@pytest.mark.parametrize("name,opts", [
    ("counterfact", {"path": "counterfact.json"}),
    ("zsre", {"path": "zsre_mend_eval.json"}),
    ("mquake", {"path": "MQuAKE-CF-3k-v2.json"}),
    ("ecbd", {"path": "ecbd/all_ent_2020_2021_np_500samples.json"}),
])
def test_requests_round_trip_through_json(load, name, opts):
    for r in load(name, **opts):
        assert EditRequest.model_validate_json(r.model_dump_json()) == r


def test_mmedit_vqa_as_text_requests(load):
    reqs = load("mmedit", path="mmedit/vqa_eval.json", on_unusable="skip")
    assert [r.case_id for r in reqs] == [0, 2]  # record 1 has an empty `alt`, skipped as the released loader does
    r = reqs[0]
    assert r.text == "Question: What colour is the kite above the pier? Short answer:"
    assert (r.target_new, r.target_true) == ("green", "red")
    assert r.paraphrase_prompts == ["Question: Which colour does the kite over the pier have? Short answer:"]
    assert [(p.prompt, p.target) for p in r.neighborhood] == [
        ("nq question: who wrote the ballad of the grey lighthouse", "Oda Brennick")]
    assert r.meta["image"] == "val2014/COCO_val2014_000000000001.jpg"
    assert (r.meta["m_loc_q"], r.meta["m_loc_a"]) == ("How many boats are moored?", "three")
    assert reqs[1].paraphrase_prompts == []  # an empty rephrase is no paraphrase


def test_mmedit_question_template(load):
    r = load("mmedit", path="mmedit/vqa_eval.json", on_unusable="skip", question_template="Q: {} A:")[0]
    assert r.text == "Q: What colour is the kite above the pier? A:"


def test_mmedit_template_without_slot_is_refused(load):
    with pytest.raises(Exception, match="question_template"):
        load("mmedit", path="mmedit/vqa_eval.json", on_unusable="skip", question_template="Q: A:")
