"""MMEdit (Cheng et al. 2023a): editing multimodal models on visual question answering
(E-VQA) and image captioning (E-IC), read as text edit requests.

kme edits text language models; an MMEdit record's images are kept as paths in ``meta``
(``image``, ``image_rephrase``, ``m_loc``) for an editor or model plugin that can use them,
and the question text alone is what a text model is asked. The textual parts map as in the
released code's loader: ``src`` is the question, ``alt`` the edited answer, ``pred`` the
model's answer before the edit, ``rephrase`` the paraphrased question, ``loc``/``loc_ans``
a text-only locality probe (an NQ question); ``m_loc_q``/``m_loc_a`` (the image-locality
question) is kept in ``meta``. Records with an empty ``alt`` are skipped, as there.
"""

from __future__ import annotations

from typing import ClassVar

from kme import EditRequest, Probe
from pydantic import Field, field_validator

from kme_datasets.base import SourceDataset, SourceParams
from kme_datasets.fields import Record, SkipRecord
from kme_datasets.prompts import whole_input

__all__ = ["MMEdit", "MMEditParams", "VQA_PROMPT"]

VQA_PROMPT = "Question: {} Short answer:"
"""How the released code asks a question (its loader's prompt, without the trailing space)."""


class MMEditParams(SourceParams):
    question_template: str = Field(
        VQA_PROMPT, description="how a question is put to the model; `{}` stands for MMEdit's `src`/`rephrase` "
                                "text (use '{}' for the bare question)")

    @field_validator("question_template")
    @classmethod
    def _has_slot(cls, value: str) -> str:
        if "{}" not in value:
            raise ValueError(f"{value!r} has no '{{}}' where the question goes")
        return value


class MMEdit(SourceDataset):
    name: ClassVar[str] = "mmedit"
    description: ClassVar[str] = ("MMEdit (Cheng et al. 2023a): E-VQA / E-IC multimodal edits, read as text "
                                  "requests (questions and answers; image paths kept in meta)")
    source_format: ClassVar[str] = (
        "MMEdit's annotation files (editing-data/vqa/vqa_{train,eval}.json, caption/caption_{train,eval}_edit.json): "
        "a JSON array of {src, pred, alt, rephrase, image, image_rephrase, loc, loc_ans, m_loc, m_loc_q, m_loc_a}")
    homepage: ClassVar[str] = "https://github.com/zjunlp/EasyEdit (MMEdit data link in its README)"
    local_file: ClassVar[str] = "vqa_eval.json"
    Params: ClassVar[type[MMEditParams]] = MMEditParams
    params: MMEditParams

    def convert(self, rec: Record) -> list[EditRequest]:
        template = self.params.question_template
        alt = rec.str("alt", allow_empty=True)
        if not alt or not alt.strip():
            raise SkipRecord("empty 'alt' (no edited answer)", "alt")
        src = rec.str("src", allow_empty=True) or ""
        prompt, subject = whole_input("{}", template.format(src).rstrip())
        paraphrases = []
        if rec.has("rephrase") and (rec.str("rephrase", allow_empty=True) or "").strip():
            paraphrases.append(template.format(rec.str("rephrase")).rstrip())
        neighborhood = []
        if rec.has("loc") and rec.has("loc_ans"):
            neighborhood.append(Probe(prompt=rec.str("loc"), target=rec.str("loc_ans")))
        meta = rec.present("image", "image_rephrase", "m_loc", "m_loc_q", "m_loc_a")
        meta["question"] = src
        pred = rec.str("pred", required=False, allow_empty=True)
        return [EditRequest(case_id=rec.index, prompt=prompt, subject=subject, target_new=alt,
                            target_true=pred or None, paraphrase_prompts=paraphrases,
                            neighborhood=neighborhood, meta=meta)]
