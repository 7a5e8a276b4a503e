"""KnowEdit (Zhang et al. 2024): WikiData_recent, WikiData_counterfact, ZsRE, WikiBio,
ConvSent and Sanitation, re-organised with portability and locality probes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from kme import DatasetRecordError, EditRequest, PortabilityQuestion, Probe
from pydantic import Field

from kme_datasets.base import SourceDataset, SourceParams
from kme_datasets.fields import Record
from kme_datasets.prompts import subject_slot_or_skip

__all__ = ["KnowEdit", "KnowEditParams", "convert_knowedit_fact", "knowedit_probes", "PORTABILITY_KINDS"]

#: KnowEdit's portability groups -> kme's PortabilityQuestion.kind.
PORTABILITY_KINDS = {
    "Subject_Aliasing": "subject-alias",
    "Reasoning": "multihop",
    "Logical_Generalization": "portability",
}


def _grouped_items(rec: Record, key: str) -> Iterator[tuple[str, Record, list[str]]]:
    """``(group, item, ground-truth answers)`` of every item of the optional ``key`` object
    ``{group: [{prompt, ground_truth}, ...]}``."""
    groups = rec.obj(key, required=False)
    if groups is None:
        return
    for kind, _ in groups.items():
        for item in groups.objs(kind) or []:
            yield kind, item, item.answers("ground_truth")


def knowedit_probes(rec: Record) -> tuple[list[Probe], list[PortabilityQuestion], dict[str, Any]]:
    """The ``locality`` groups (Relation_Specificity, Forgetfulness, ...) as neighbourhood
    probes expecting their (unchanged) ground truth, and the ``portability`` groups as
    portability questions; the group of each probe and the aliases are kept for ``meta``."""
    neighborhood: list[Probe] = []
    locality_kinds: list[str] = []
    locality_aliases: list[list[str]] = []
    for kind, item, answers in _grouped_items(rec, "locality"):
        neighborhood.append(Probe(prompt=item.str("prompt"), target=answers[0]))
        locality_kinds.append(kind)
        locality_aliases.append(answers[1:])
    portability: list[PortabilityQuestion] = []
    portability_kinds: list[str] = []
    for kind, item, answers in _grouped_items(rec, "portability"):
        portability.append(PortabilityQuestion(
            prompt=item.str("prompt"), target_new=answers[0], aliases=answers[1:],
            kind=PORTABILITY_KINDS.get(kind, "portability")))
        portability_kinds.append(kind)
    meta = {"locality_kinds": locality_kinds, "locality_aliases": locality_aliases,
            "portability_kinds": portability_kinds}
    return neighborhood, portability, meta


def convert_knowedit_fact(rec: Record, case_id: int | str) -> list[EditRequest]:
    """WikiData_recent / WikiData_counterfact / KnowEdit ZsRE record -> one request:
    ``subject``, ``prompt`` (plain text containing the subject), ``target_new``, optional
    ``ground_truth`` (old object; recent facts have none), ``rephrase``/``rephrase_prompt``."""
    subject = rec.str("subject")
    prompt, subject = subject_slot_or_skip(rec.str("prompt"), subject, "prompt")
    target_true = None
    if rec.has("ground_truth"):
        gt = rec.answers("ground_truth")
        target_true = gt[0]
    paraphrases: list[str] = []
    for key in ("rephrase_prompt", "rephrase"):
        if isinstance(rec.raw(key), str):
            paraphrases.append(rec.str(key))
        elif rec.has(key):
            paraphrases += rec.strs(key)
    neighborhood, portability, meta = knowedit_probes(rec)
    if rec.has("cond"):
        meta["cond"] = rec.str("cond")
    if rec.has("ground_truth"):
        meta["target_true_aliases"] = rec.answers("ground_truth")[1:]
    return [EditRequest(case_id=case_id, prompt=prompt, subject=subject, target_new=rec.str("target_new"),
                        target_true=target_true, paraphrase_prompts=paraphrases, neighborhood=neighborhood,
                        portability=portability, meta=meta)]


Subset = Literal["wiki_recent", "wiki_counterfact", "wikibio", "convsent", "sanitation", "zsre"]


class KnowEditParams(SourceParams):
    subset: Subset = Field(..., description="which KnowEdit file: wiki_recent, wiki_counterfact, wikibio, "
                                            "convsent, sanitation (or zsre)")
    sentiment: Literal["alternate", "positive", "negative"] = Field(
        "alternate", description="convsent only: target sentiment per topic (alternate: even records positive)")


class KnowEdit(SourceDataset):
    name: ClassVar[str] = "knowedit"
    description: ClassVar[str] = ("KnowEdit (Zhang et al. 2024): WikiData_recent, WikiData_counterfact, WikiBio, "
                                  "ConvSent, Sanitation (and ZsRE) with portability and locality probes")
    source_format: ClassVar[str] = (
        "KnowEdit JSON: wiki_recent/recent_test.json, wiki_counterfact/test_cf.json, ZsRE/ZsRE-test-all.json "
        "(subject, prompt, target_new, ground_truth, rephrase, portability{group: [{prompt, ground_truth}]}, "
        "locality{group: [...]}); WikiBio/wikibio-test-all.json (text, labels, concept, locality); "
        "convsent/blender_test.json (ent, pos, neg); Sanitation/trivia_qa_test.json ({success, locality} or "
        "{K_F, K_R} lists of {question, ground_truth, target_new})")
    homepage: ClassVar[str] = "https://huggingface.co/datasets/zjunlp/KnowEdit"
    local_file: ClassVar[str] = "wiki_recent/recent_test.json"
    Params: ClassVar[type[KnowEditParams]] = KnowEditParams
    params: KnowEditParams

    def _delegate(self):
        from kme_datasets.classification import ConvSent
        from kme_datasets.hallucination import Hallucination
        from kme_datasets.sanitation import Sanitation

        sub = self.params.subset
        if sub == "wikibio":
            return Hallucination
        if sub == "convsent":
            return ConvSent
        if sub == "sanitation":
            return Sanitation
        return None

    def _inner(self) -> SourceDataset | None:
        """The dataset that reads this subset's own format (built once per instance)."""
        if not hasattr(self, "_inner_obj"):
            cls = self._delegate()
            self._inner_obj = None
            if cls is not None:
                fields = set(cls.Params.model_fields)
                self._inner_obj = cls({k: v for k, v in self.params.model_dump().items() if k in fields})
                self._inner_obj.name = f"knowedit/{self.params.subset}"
        return self._inner_obj

    def records(self, content: Any, label: str) -> list[Any]:
        inner = self._inner()
        return inner.records(content, label) if inner is not None else super().records(content, label)

    def prepare(self, records: list[Any], label: str) -> None:
        inner = self._inner()
        if inner is not None:
            inner.prepare(records, label)

    def convert(self, rec: Record) -> list[EditRequest]:
        inner = self._inner()
        if inner is not None:
            return inner.convert(rec)
        if rec.has("src"):
            raise DatasetRecordError(
                f"record {rec.index}: this is MEND's zsRE format (field 'src'), not KnowEdit's",
                where=rec.source, hint="load it with dataset `zsre`")
        return convert_knowedit_fact(rec, rec.index)
