"""A record missing a field or holding the wrong type stops the load with a DatasetRecordError
naming the file, the record index and the field path, for every dataset."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
from kme.errors import DatasetRecordError


def _read(path: Path):
    if path.suffix == ".jsonl" or path.name.endswith("500samples.json"):
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()], "lines"
    return json.loads(path.read_text()), "json"


def _write(path: Path, data, kind: str) -> None:
    if kind == "lines":
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    else:
        path.write_text(json.dumps(data))


def _del(*keys):
    def f(rec):
        for k in keys[:-1]:
            rec = rec[k]
        del rec[keys[-1]]
    return f


def _set(value, *keys):
    def f(rec):
        for k in keys[:-1]:
            rec = rec[k]
        rec[keys[-1]] = value
    return f


def _drop_mask(rec):
    rec["definition"] = rec["definition"].replace("<extra_id_0>", "")


# (dataset, options, fixture, record index, mutation, expected "field ... problem")
CASES = [
    ("counterfact", {}, "counterfact.json", 1, _del("requested_rewrite", "target_new"),
     "field 'requested_rewrite.target_new' is missing"),
    ("counterfact", {}, "counterfact.json", 0, _set("a string", "paraphrase_prompts"),
     "field 'paraphrase_prompts' must be an array, got string"),
    ("counterfact", {}, "counterfact.json", 2, _set(5, "requested_rewrite", "target_true", "str"),
     "field 'requested_rewrite.target_true.str' must be a string, got integer"),
    ("counterfact", {}, "counterfact.json", 0, _set("The mother tongue is", "requested_rewrite", "prompt"),
     "field 'requested_rewrite.prompt' must contain exactly one '{}' subject slot"),
    ("counterfact", {}, "counterfact.json", 1, _set(["ok prompt", 3], "neighborhood_prompts"),
     "field 'neighborhood_prompts' must hold non-empty strings, but item 1 is integer"),
    ("mcf", {}, "multi_counterfact.json", 1, _del("case_id"), "field 'case_id' is missing"),
    ("zsre", {}, "zsre_mend_eval.json", 0, _del("loc_ans"), "field 'loc_ans' is missing"),
    ("zsre", {}, "zsre_mend_eval.json", 1, _set([], "answers"), "field 'answers' must be a non-empty array"),
    ("zsre", {}, "knowedit/ZsRE/ZsRE-test-all.json", 0, _set(7, "locality", "Relation_Specificity", 0, "ground_truth"),
     "field 'locality.Relation_Specificity[0].ground_truth' must be a string or a list of strings, got integer"),
    ("mquake", {}, "MQuAKE-CF-3k-v2.json", 0, _del("requested_rewrite", 1, "subject"),
     "field 'requested_rewrite[1].subject' is missing"),
    ("mquake", {}, "MQuAKE-CF-3k-v2.json", 1, _set(["Tallow Creek"], "new_answer"),
     "field 'new_answer' must be a string, got array"),
    ("mquake", {}, "MQuAKE-CF-3k-v2.json", 0, _set({"question": "q?"}, "new_single_hops", 1),
     "field 'new_single_hops[1].answer' is missing"),
    ("knowedit", {"subset": "wiki_recent"}, "knowedit/wiki_recent/recent_test.json", 0,
     _del("portability", "Reasoning", 0, "prompt"), "field 'portability.Reasoning[0].prompt' is missing"),
    ("knowedit", {"subset": "wiki_counterfact"}, "knowedit/wiki_counterfact/test_cf.json", 1, _del("target_new"),
     "field 'target_new' is missing"),
    ("knowedit", {"subset": "wikibio"}, "knowedit/WikiBio/wikibio-test-all.json", 1, _del("labels"),
     "field 'labels' is missing"),
    ("knowedit", {"subset": "convsent"}, "knowedit/convsent/blender_test.json", 2, _set("fine", "pos"),
     "field 'pos' must be an array, got string"),
    ("trex", {"relations_path": "lama/relations.jsonl"}, "lama/TREx/P19.jsonl", 1, _del("obj_label"),
     "field 'obj_label' is missing"),
    ("pararel", {"patterns_path": "pararel/graphs_json/P19.jsonl"}, "pararel/trex_lms_vocab/P19.jsonl", 0,
     _set(12, "sub_label"), "field 'sub_label' must be a string, got integer"),
    ("ecbd", {}, "ecbd/all_ent_2020_2021_np_500samples.json", 1, _del("probe_sentences", "template_0", "label"),
     "field 'probe_sentences.template_0.label' is missing"),
    ("ecbd", {}, "ecbd/all_ent_2020_2021_np_500samples.json", 0, _drop_mask,
     "field 'definition' must contain exactly one '<extra_id_0>' mask"),
    ("nq-situatedqa", {}, "situatedqa/temp.test.jsonl", 2, _set(5, "answer"),
     "field 'answer' must be a string or a list of strings, got integer"),
    ("hallucination", {}, "grace/hallucination_edit.json", 0, _del("concept"), "field 'concept' is missing"),
    ("fever", {}, "fever/fever-dev-kilt.jsonl", 1, _set([], "output"), "field 'output' must be a non-empty array"),
    ("fever", {}, "fever/fever-dev-kilt.jsonl", 0, _set([{"provenance": []}], "output"),
     "field 'output[0].answer' is missing"),
    ("vitaminc", {}, "vitaminc/test.jsonl", 1, _del("claim"), "field 'claim' is missing"),
    ("convsent", {}, "knowedit/convsent/blender_test.json", 0, _del("ent"), "field 'ent' is missing"),
]


@pytest.mark.parametrize("name,opts,fixture,index,mutate,expected", CASES,
                         ids=[f"{c[0]}-{c[5].split(chr(39))[1]}" for c in CASES])
def test_malformed_record_names_file_record_and_field(load, fixtures, tmp_path, name, opts, fixture, index,
                                                      mutate, expected):
    src = fixtures / fixture
    data, kind = _read(src)
    bad = copy.deepcopy(data)
    mutate(bad[index])
    dst = tmp_path / src.name
    _write(dst, bad, kind)
    with pytest.raises(DatasetRecordError) as e:
        load(name, path=str(dst), **opts)
    text = str(e.value)
    assert text.startswith(str(dst) + ": "), text
    assert f"record {index}: {expected}" in text, text
    assert "hint:" in text  # says which published format is expected


def test_sanitation_item_missing_field(load, fixtures, tmp_path):
    data = json.loads((fixtures / "knowedit/Sanitation/trivia_qa_test.json").read_text())
    del data["success"][1]["target_new"]
    p = tmp_path / "trivia_qa_test.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DatasetRecordError, match=r"record 1: field 'target_new' is missing"):
        load("knowedit", path=str(p), subset="sanitation")
    p.write_text(json.dumps([data["success"][0]]))
    with pytest.raises(DatasetRecordError, match="expected an object with 'success' and 'locality' lists, got array"):
        load("knowedit", path=str(p), subset="sanitation")


def test_wikigen_column_problems(load, fixtures, tmp_path):
    data = json.loads((fixtures / "wikigen/valid.json").read_text())
    p = tmp_path / "valid.json"
    p.write_text(json.dumps({**data, "completions": data["completions"][:2]}))
    with pytest.raises(DatasetRecordError, match=r"record <file>: field 'completions' has 2 items but 'original' has 3"):
        load("wikigen", path=str(p))
    p.write_text(json.dumps({k: v for k, v in data.items() if k != "n_tokens"}))
    with pytest.raises(DatasetRecordError, match=r"field 'n_tokens' is missing"):
        load("wikigen", path=str(p))


def test_scotus_csv_label_not_a_number(load, tmp_path):
    p = tmp_path / "test.csv"
    with p.open("w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], ["An opinion.", "3"], ["Another opinion.", "civil"]])
    with pytest.raises(DatasetRecordError, match=r"record 1: field 'label' must be an integer, got string"):
        load("scotus", path=str(p))


def test_bias_in_bios_parquet_wrong_type(load, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "bios.parquet"
    pq.write_table(pa.table({"hard_text": ["A bio ."], "profession": ["nurse?"], "gender": [0]}), p)
    with pytest.raises(DatasetRecordError, match=r"record 0: field 'profession' must be an integer, got string"):
        load("bias-in-bios", path=str(p))


def test_invalid_json_line_names_the_line(load, fixtures, tmp_path):
    lines = (fixtures / "fever/fever-dev-kilt.jsonl").read_text().splitlines()
    p = tmp_path / "fever.jsonl"
    p.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(DatasetRecordError, match="line 2 is not valid JSON"):
        load("fever", path=str(p))


def test_top_level_must_be_an_array(load, tmp_path):
    p = tmp_path / "cf.json"
    p.write_text(json.dumps({"case_id": 0}))
    with pytest.raises(DatasetRecordError, match="expected a JSON array of records at the top level, got object"):
        load("counterfact", path=str(p))


def test_record_that_is_not_an_object(load, tmp_path):
    p = tmp_path / "cf.json"
    p.write_text(json.dumps([["not", "an", "object"]]))
    with pytest.raises(DatasetRecordError, match=r"record 0: field '<record>' must be a JSON object, got array"):
        load("counterfact", path=str(p))


def test_request_model_rejections_become_record_errors(load):
    with pytest.raises(DatasetRecordError, match=r"fever-dev-kilt.jsonl: record 0: cannot build an edit request: target_new"):
        load("fever", path="fever/fever-dev-kilt.jsonl", target="gold", label_words={"SUPPORTS": " ", "REFUTES": "false"})


def test_duplicate_case_ids_are_refused(load, fixtures, tmp_path):
    recs = json.loads((fixtures / "counterfact.json").read_text())
    recs[2]["case_id"] = 0
    p = tmp_path / "cf.json"
    p.write_text(json.dumps(recs))
    with pytest.raises(DatasetRecordError, match="case id '0' occurs more than once"):
        load("counterfact", path=str(p))


def test_unusable_record_stops_when_asked(load):
    with pytest.raises(DatasetRecordError, match=r"record 2: field 'src' subject 'Pellworth Abbey' does not occur"):
        load("zsre", path="zsre_mend_eval.json", on_unusable="error")
