"""NQ-SituatedQA: Natural Questions whose answers depend on when they are asked, with the
answer valid at a given date (SituatedQA's temporal split), as used by PPA/continual QA."""

from __future__ import annotations

from typing import ClassVar

from kme import EditRequest

from kme_datasets.base import SourceDataset
from kme_datasets.fields import Record
from kme_datasets.prompts import whole_input

__all__ = ["NQSituatedQA", "convert_situatedqa"]


def convert_situatedqa(rec: Record) -> list[EditRequest]:
    """``question`` (the NQ question) -> ``answer[0]`` (the answer as of ``date``; other
    answers are aliases in ``meta``). ``edited_question`` (the question with its date made
    explicit) is a paraphrase. Questions have no marked subject: the question is the subject."""
    question = rec.str("question")
    answers = rec.answers("answer")
    prompt, subject = whole_input("{}", question)
    para = []
    if rec.has("edited_question"):
        eq = rec.str("edited_question")
        if eq.strip() != question.strip():
            para.append(eq)
    meta = {"answer_aliases": answers[1:], **rec.present("date", "date_type", "location", "any_answer")}
    return [EditRequest(case_id=rec.id_or_index("id"), prompt=prompt, subject=subject, target_new=answers[0],
                        paraphrase_prompts=para, meta=meta)]


class NQSituatedQA(SourceDataset):
    name: ClassVar[str] = "nq-situatedqa"
    description: ClassVar[str] = ("NQ-SituatedQA (Zhang & Choi 2021; Lee et al. 2022): time-dependent Natural "
                                  "Questions edited to their answer as of a later date")
    source_format: ClassVar[str] = (
        "SituatedQA JSON lines (qa_data/temp.{train,dev,test}.jsonl): {id, question, edited_question, date, "
        "date_type, answer: [str], any_answer: [str]}; NQ-open lines {question, answer} also load")
    homepage: ClassVar[str] = "https://situatedqa.github.io/ (qa_data/temp.*.jsonl)"
    local_file: ClassVar[str] = "temp.test.jsonl"

    def convert(self, rec: Record) -> list[EditRequest]:
        return convert_situatedqa(rec)
