"""CounterFact (ROME) and multi-CounterFact (MEMIT): counterfactual rewrites of Wikidata
facts with paraphrase, neighbourhood, attribute and generation prompts."""

from __future__ import annotations

from typing import ClassVar

from kme import EditRequest, Probe

from kme_datasets.base import SourceDataset
from kme_datasets.fields import Record

__all__ = ["CounterFact", "MultiCounterFact", "convert_counterfact"]

FORMAT = ("a JSON array of ROME records: case_id, pararel_idx, requested_rewrite {prompt with '{}', "
          "relation_id, subject, target_new {str, id}, target_true {str, id}}, paraphrase_prompts, "
          "neighborhood_prompts, attribute_prompts, generation_prompts")


def convert_counterfact(rec: Record) -> list[EditRequest]:
    """One CounterFact record -> one request.

    Neighbourhood prompts ask the same relation of other subjects whose true object is the
    edit's *old* object, so each becomes a probe expecting ``target_true``. Attribute prompts
    (other subjects that truly have the *new* object) are kept in ``meta``.
    """
    rw = rec.obj("requested_rewrite")
    prompt = rw.template("prompt")
    subject = rw.str("subject")
    tn, tt = rw.obj("target_new"), rw.obj("target_true")
    target_new, target_true = tn.str("str"), tt.str("str")
    neighborhood = rec.strs("neighborhood_prompts")
    meta = {
        "pararel_idx": rec.raw("pararel_idx"),
        "target_new_id": tn.raw("id"),
        "target_true_id": tt.raw("id"),
        "attribute_prompts": rec.strs("attribute_prompts", required=False) or [],
    }
    return [EditRequest(
        case_id=rec.id("case_id"),
        prompt=prompt,
        subject=subject,
        target_new=target_new,
        target_true=target_true,
        relation=rw.str("relation_id", required=False),
        paraphrase_prompts=rec.strs("paraphrase_prompts"),
        neighborhood=[Probe(prompt=p, target=target_true) for p in neighborhood],
        generation_prompts=rec.strs("generation_prompts", required=False) or [],
        meta=meta,
    )]


class CounterFact(SourceDataset):
    name: ClassVar[str] = "counterfact"
    description: ClassVar[str] = ("CounterFact (ROME, Meng et al. 2022): 21,919 counterfactual edits with "
                                  "paraphrase, neighbourhood and generation prompts")
    source_format: ClassVar[str] = f"counterfact.json: {FORMAT}"
    homepage: ClassVar[str] = "https://rome.baulab.info/data/dsets/counterfact.json"
    local_file: ClassVar[str] = "counterfact.json"

    def convert(self, rec: Record) -> list[EditRequest]:
        return convert_counterfact(rec)


class MultiCounterFact(CounterFact):
    name: ClassVar[str] = "mcf"
    description: ClassVar[str] = ("multi-CounterFact (MEMIT, Meng et al. 2023): CounterFact filtered for "
                                  "mass editing (no conflicting subjects), same record format")
    source_format: ClassVar[str] = f"multi_counterfact.json: {FORMAT}"
    homepage: ClassVar[str] = "https://memit.baulab.info/data/dsets/multi_counterfact.json"
    local_file: ClassVar[str] = "multi_counterfact.json"
