"""zsRE question answering edits: MEND's evaluation split (as used by ROME/MEMIT) and the
KnowEdit variant with portability and locality groups."""

from __future__ import annotations

from typing import ClassVar, Literal

from kme import EditRequest, PortabilityQuestion, Probe
from pydantic import Field

from kme_datasets.base import SourceDataset, SourceParams
from kme_datasets.fields import Record
from kme_datasets.knowedit import convert_knowedit_fact
from kme_datasets.prompts import subject_slot_or_skip

__all__ = ["ZsRE", "ZsREParams", "convert_mend_zsre"]


class ZsREParams(SourceParams):
    target: Literal["alt", "answer"] = Field(
        "alt", description="MEND format: edit towards `alt` (the alternative answer, old object = answers[0]; "
                           "MEND/KE/EasyEdit) or towards answers[0] with no old object (ROME/MEMIT's zsRE runs)")


def convert_mend_zsre(rec: Record, target: str) -> list[EditRequest]:
    """MEND record: ``src`` is the question (contains ``subject``), ``rephrase`` its
    paraphrase, ``loc``/``loc_ans`` an unrelated Natural Questions probe."""
    subject = rec.str("subject")
    prompt, subject = subject_slot_or_skip(rec.str("src"), subject, "src")
    answers = rec.strs("answers", non_empty=True)
    alt = rec.str("alt")
    if target == "alt":
        target_new, target_true = alt, answers[0]
    else:
        target_new, target_true = answers[0], None
    portability = []
    port = rec.obj("portability", required=False)  # EasyEdit's zsre_mend_eval_portability_gpt4.json
    if port is not None:
        portability.append(PortabilityQuestion(prompt=port.str("New Question"), target_new=port.str("New Answer"),
                                               kind="portability"))
    meta = {"answers": answers, "alt": alt}
    for key in ("pred", "cond"):
        if rec.has(key):
            meta[key] = rec.str(key, allow_empty=True)
    return [EditRequest(
        case_id=rec.id_or_index("case_id"),
        prompt=prompt, subject=subject, target_new=target_new, target_true=target_true,
        paraphrase_prompts=[rec.str("rephrase")],
        neighborhood=[Probe(prompt=rec.str("loc"), target=rec.str("loc_ans"))],
        portability=portability, meta=meta)]


class ZsRE(SourceDataset):
    name: ClassVar[str] = "zsre"
    description: ClassVar[str] = ("zsRE (Levy et al. 2017; De Cao et al. 2021; MEND): question edits with a "
                                  "paraphrase and an unrelated NQ locality question")
    source_format: ClassVar[str] = (
        "zsre_mend_eval.json (MEND): a JSON array of {subject, src, pred, rephrase, alt, answers, loc, loc_ans, "
        "cond}; also KnowEdit's ZsRE-test-all.json {subject, prompt, target_new, ground_truth, rephrase_prompt, "
        "locality, portability}")
    homepage: ClassVar[str] = "https://rome.baulab.info/data/dsets/zsre_mend_eval.json"
    local_file: ClassVar[str] = "zsre_mend_eval.json"
    Params: ClassVar[type[ZsREParams]] = ZsREParams
    params: ZsREParams

    def convert(self, rec: Record) -> list[EditRequest]:
        if rec.has("src") or not rec.has("prompt"):
            return convert_mend_zsre(rec, self.params.target)
        return convert_knowedit_fact(rec, rec.index)
