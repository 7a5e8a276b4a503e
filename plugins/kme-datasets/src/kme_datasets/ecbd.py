"""ECBD for entity knowledge propagation (Onoe et al. 2023): inject a new entity's
definition, then test cloze spans of other sentences about it."""

from __future__ import annotations

from typing import ClassVar

from kme import EditRequest, PortabilityQuestion

from kme_datasets.base import SourceDataset
from kme_datasets.fields import Record, SkipRecord
from kme_datasets.prompts import cloze_left, sentinel_span, slot_subject

__all__ = ["ECBD", "convert_ecbd"]


def _masked(rec: Record, key: str) -> tuple[str, str]:
    """The text of ``key`` split at its one ``<extra_id_0>`` mask (see :func:`cloze_left`)."""
    cut = cloze_left(rec.str(key))
    if cut is None:
        raise rec.error("must contain exactly one '<extra_id_0>' mask", key)
    return cut


def convert_ecbd(rec: Record) -> list[EditRequest]:
    """The definition's text before its ``<extra_id_0>`` mask is the prompt and the masked
    span (``def_target``) the target; the whole unmasked definition is the edit's reference
    text (what fine-tuning editors learn from). Each probe sentence becomes a portability
    question: its text before the mask, expecting its span. The subject is ``ent_str`` where
    it occurs in the prompt, else the whole prompt (entity names are often spelled
    differently, e.g. with another dash)."""
    left, right = _masked(rec, "definition")
    if not left.strip():
        raise SkipRecord("the definition's mask is at its start: no left context to prompt with", "definition")
    span = sentinel_span(rec.str("def_target"))
    if not span:
        raise rec.error("holds no text between its sentinels", "def_target")
    ent = rec.str("ent_str")
    got = slot_subject(left, ent)
    if got is not None:
        prompt, subject, subject_from = got[0], got[1], "ent_str"
    else:
        prompt, subject, subject_from = "{}", left.replace("{}", "{ }"), "prompt"
    probes = rec.obj("probe_sentences")
    portability = []
    for key, _ in probes.items():
        ps = probes.obj(key)
        cut = _masked(ps, "probe_sentence")
        target = sentinel_span(ps.str("label"))
        if cut[0].strip() and target:
            portability.append(PortabilityQuestion(prompt=cut[0], target_new=target, kind="portability"))
    meta = rec.present("category", "qid", "attribute", "additional_sentences")
    meta["subject_from"] = subject_from
    meta["ent_str"] = ent
    return [EditRequest(case_id=rec.id("ex_id"), prompt=prompt, subject=subject, target_new=span,
                        portability=portability, reference_texts=[left + " " + span + right],
                        meta=meta)]


class ECBD(SourceDataset):
    name: ClassVar[str] = "ecbd"
    description: ClassVar[str] = ("ECBD entity knowledge propagation (Onoe et al. 2023): definitions of entities "
                                  "new in 2020-2021, probed with cloze spans of other sentences")
    source_format: ClassVar[str] = (
        "JSON lines (e.g. data/ecbd/all_ent_2020_2021_np_500samples.json): {ex_id, definition with "
        "<extra_id_0>, def_target '<extra_id_0> span <extra_id_1>', category, qid, ent_str, attribute, "
        "additional_sentences, conceptnet, probe_sentences {template_k: {probe_sentence, label}}}")
    homepage: ClassVar[str] = "https://github.com/yasumasaonoe/entity_knowledge_propagation (data/ecbd/)"
    local_file: ClassVar[str] = "all_ent_2020_2021_np_500samples.json"

    def convert(self, rec: Record) -> list[EditRequest]:
        return convert_ecbd(rec)
