"""MQuAKE (Zhong et al. 2023): multi-hop questions whose answers change when every edit of a
case is applied. CF-3k, CF-3k-v2, CF (9k) and T share one record format."""

from __future__ import annotations

from typing import ClassVar

from kme import EditRequest, PortabilityQuestion

from kme_datasets.base import SourceDataset
from kme_datasets.fields import Record

__all__ = ["MQuAKE", "convert_mquake"]


def convert_mquake(rec: Record) -> list[EditRequest]:
    """One case with k rewrites -> k requests ``"<case_id>.<j>"``.

    Each rewrite's ``question`` is its paraphrase. The case's multi-hop ``questions`` (expected
    ``new_answer`` with ``new_answer_alias``; ``answer`` before editing) and its new
    single-hop chain are attached to the *last* request of the case, so they are asked once,
    after the whole case has been applied (batch mode with the case in one batch, or
    sequential mode once its last edit is in). ``meta`` links the requests of a case.
    """
    case_id = rec.id("case_id")
    rewrites = rec.objs("requested_rewrite", non_empty=True)
    questions = rec.strs("questions", non_empty=True)
    new_answer = rec.str("new_answer")
    answer = rec.str("answer")
    new_alias = rec.strs("new_answer_alias", required=False) or []
    old_alias = rec.strs("answer_alias", required=False) or []
    hops = rec.objs("single_hops", required=False) or []
    new_hops = rec.objs("new_single_hops", required=False) or []
    multihop = [PortabilityQuestion(prompt=q, target_new=new_answer, target_true=answer, kind="multihop",
                                    aliases=new_alias) for q in questions]
    one_hop = []
    for i, hop in enumerate(new_hops):
        old = hops[i].str("answer") if i < len(hops) else None
        one_hop.append(PortabilityQuestion(prompt=hop.str("question"), target_new=hop.str("answer"), target_true=old,
                                           kind="one-hop", aliases=hop.strs("answer_alias", required=False) or []))
    out = []
    for j, rw in enumerate(rewrites):
        prompt = rw.template("prompt")
        last = j == len(rewrites) - 1
        q = rw.str("question", required=False)
        meta = {"mquake_case_id": case_id, "edit_index": j, "num_edits": len(rewrites),
                "target_new_id": rw.obj("target_new").raw("id"), "target_true_id": rw.obj("target_true").raw("id")}
        if last:
            meta.update(answer_alias=old_alias, orig=rec.raw("orig"))
        out.append(EditRequest(
            case_id=f"{case_id}.{j}", prompt=prompt, subject=rw.str("subject"),
            target_new=rw.obj("target_new").str("str"), target_true=rw.obj("target_true").str("str"),
            relation=rw.str("relation_id", required=False), paraphrase_prompts=[q] if q else [],
            portability=(multihop + one_hop) if last else [], meta=meta))
    return out


class MQuAKE(SourceDataset):
    name: ClassVar[str] = "mquake"
    description: ClassVar[str] = ("MQuAKE (Zhong et al. 2023): multi-hop questions over chains of edited facts "
                                  "(CF-3k, CF-3k-v2, CF, T); each case yields one request per rewrite")
    source_format: ClassVar[str] = (
        "MQuAKE-CF-3k.json / MQuAKE-CF-3k-v2.json / MQuAKE-T.json: a JSON array of {case_id, requested_rewrite: "
        "[{prompt, relation_id, target_new {str, id}, target_true {str, id}, subject, question}], questions, "
        "answer, answer_alias, new_answer, new_answer_alias, single_hops, new_single_hops "
        "[{question, cloze, answer, answer_alias}], orig {triples, triples_labeled, new_triples, ...}}")
    homepage: ClassVar[str] = "https://github.com/princeton-nlp/MQuAKE (datasets/)"
    local_file: ClassVar[str] = "MQuAKE-CF-3k-v2.json"

    def convert(self, rec: Record) -> list[EditRequest]:
        return convert_mquake(rec)
