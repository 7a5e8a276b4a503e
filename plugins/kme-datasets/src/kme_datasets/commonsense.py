"""PEP3k and 20 Questions as MEMIT-CSK (Gupta et al., 2023) released them: short commonsense
statements ("Worm bends rabbit") judged True or False, with their subject, verb and object.

The prompt is the statement followed by ":" (the released evaluation's format); the target
is the correct label, the other label is ``target_true`` (the edit corrects a wrong
judgement) and ``choices`` are both. The verb and object spans go to ``meta["verb"]`` and
``meta["object"]``, where MEMIT-CSK and causal tracing's ``corrupt`` find them.

Three record shapes are read, each as the repository ships it:

* edit files (``incorrect_subsets/*``): ``{case_id, requested_rewrite: {prompt, subject,
  verb, object, target_new: {str}, target_true: {str}}}``;
* annotated sets (``svo_annotated/*``): ``{prompt, label: 0|1, subject, verb, object}``;
* probe sets (``probe_set.json``): ``{id, prompt, label: " True"|" False", subject, verb,
  object, affected_paraphrase, affected_neighborhood_{subject,verb,object},
  affected_reasoning, unaffected_neighborhood_{subject,object}}``. Affected paraphrases
  become ``paraphrase_prompts``; affected neighbours and reasoning statements (always True in
  the released evaluation) become portability questions (``meta["probe"]`` names which);
  the unaffected neighbours carry no label (the paper compares them with the unedited
  model's own judgement), so they are kept in ``meta["unaffected_neighborhood"]``.
"""

from __future__ import annotations

from typing import ClassVar

from kme import EditRequest, PortabilityQuestion

from kme_datasets.base import SourceDataset
from kme_datasets.fields import Record, SkipRecord

__all__ = ["PEP3k", "TwentyQuestions", "convert_commonsense"]

LABELS = ("False", "True")
_AFFECTED = ("affected_neighborhood_subject", "affected_neighborhood_verb", "affected_neighborhood_object")


def _label(rec: Record, key: str) -> str:
    v = rec.raw(key)
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise rec.error("must be 0, 1, 'True' or 'False'", key)
    if isinstance(v, int) and v in (0, 1):
        return LABELS[v]
    if isinstance(v, str) and v.strip() in LABELS:
        return v.strip()
    raise rec.error(f"must be 0, 1, 'True' or 'False', got {v!r}", key)


def _other(label: str) -> str:
    return LABELS[1 - LABELS.index(label)]


def _statement(text: str) -> str:
    text = text.strip()
    return text if text.endswith(":") else f"{text}:"


def _request(rec: Record, case_id: int | str, spans: Record, label: str, prompt_key: str,
             target_true: str | None = None) -> EditRequest:
    prompt = _statement(spans.str(prompt_key))
    subject, verb, obj = (spans.str(k, required=False) for k in ("subject", "verb", "object"))
    for key, value in (("subject", subject), ("verb", verb), ("object", obj)):
        if value is None:  # statements without an object ("Branch cleaved") exist in the release
            raise SkipRecord(f"the statement {prompt!r} has no {key}", key)
        if value not in prompt:
            raise SkipRecord(f"{key} {value!r} does not occur in the statement {prompt!r}", key)
    paraphrases = [_statement(p) for p in rec.strs("affected_paraphrase", required=False) or []]
    portability = [PortabilityQuestion(prompt=_statement(p), target_new=label, target_true=_other(label),
                                       meta={"probe": key})
                   for key in _AFFECTED for p in rec.strs(key, required=False) or []]
    portability += [PortabilityQuestion(prompt=_statement(p), target_new="True", target_true="False",
                                        meta={"probe": "affected_reasoning"})
                    for p in rec.strs("affected_reasoning", required=False) or []]
    unaffected = [_statement(p) for key in ("unaffected_neighborhood_subject", "unaffected_neighborhood_object")
                  for p in rec.strs(key, required=False) or []]
    meta = {"verb": verb, "object": obj}
    if unaffected:
        meta["unaffected_neighborhood"] = unaffected
    return EditRequest(case_id=case_id, prompt=prompt, subject=subject, target_new=label,
                       target_true=target_true or _other(label), choices=list(LABELS),
                       paraphrase_prompts=paraphrases, portability=portability, meta=meta)


def convert_commonsense(rec: Record) -> list[EditRequest]:
    """One statement record (any of the three shapes) → one request."""
    if rec.has("requested_rewrite"):
        rw = rec.obj("requested_rewrite")
        new = rw.obj("target_new")
        true = rw.obj("target_true", required=False)
        label = _label(new, "str")
        return [_request(rec, rec.id_or_index("case_id"), rw, label, "prompt",
                         _label(true, "str") if true is not None else None)]
    return [_request(rec, rec.id_or_index("id"), rec, _label(rec, "label"), "prompt")]


class PEP3k(SourceDataset):
    name: ClassVar[str] = "pep3k"
    description: ClassVar[str] = ("PEP3k (Wang et al., 2018) as MEMIT-CSK released it: physical-plausibility "
                                  "statements with subject/verb/object spans, judged True/False; probe sets too")
    source_format: ClassVar[str] = (
        "a JSON array from anshitag/memit_csk data/pep3k/: edit files {case_id, requested_rewrite: {prompt, subject, "
        "verb, object, target_new: {str}, target_true: {str}}}, svo_annotated {prompt, label: 0|1, subject, verb, "
        "object} or probe_set.json (adds affected_*/unaffected_* statement lists)")
    homepage: ClassVar[str] = "https://github.com/anshitag/memit_csk (data/pep3k)"
    local_file: ClassVar[str] = "incorrect_subsets/gpt2-xl/edit_subset.json"

    def convert(self, rec: Record) -> list[EditRequest]:
        return convert_commonsense(rec)


class TwentyQuestions(PEP3k):
    name: ClassVar[str] = "20q"
    description: ClassVar[str] = ("20 Questions commonsense statements as MEMIT-CSK released them, with "
                                  "subject/verb/object spans, judged True/False; probe sets too")
    source_format: ClassVar[str] = PEP3k.source_format.replace("data/pep3k/", "data/20q/")
    homepage: ClassVar[str] = "https://github.com/anshitag/memit_csk (data/20q)"
