"""KnowEdit's Sanitation subset (TriviaQA questions whose answer must be forgotten: the
target is a refusal such as "I don't know.")."""

from __future__ import annotations

from typing import Any, ClassVar

from kme import EditRequest, Probe

from kme_datasets.base import SourceDataset
from kme_datasets.fields import Record
from kme_datasets.prompts import slot_or_whole_input

__all__ = ["Sanitation"]


class Sanitation(SourceDataset):
    """Records are the ``success`` list of the test file (``K_F``, the knowledge to forget, in
    the train file). The ``locality`` list (``K_R``, knowledge to retain) becomes
    neighbourhood probes expecting their ground truth, spread round-robin over the edits
    (locality item i goes to edit i mod n, counting every edit in the file)."""

    name: ClassVar[str] = "sanitation"
    description: ClassVar[str] = "KnowEdit Sanitation: TriviaQA answers to erase (target: a refusal)"
    source_format: ClassVar[str] = ("trivia_qa_test.json {success: [...], locality: [...]} or trivia_qa_train.json "
                                    "{K_F: [...], K_R: [...]}; items {question, ground_truth, target_new, subject?}")
    homepage: ClassVar[str] = "https://huggingface.co/datasets/zjunlp/KnowEdit (Sanitation/)"
    local_file: ClassVar[str] = "Sanitation/trivia_qa_test.json"

    def records(self, content: Any, label: str) -> list[Any]:
        top = self.top_object(content, label, "an object with 'success' and 'locality' lists")
        edit_key, keep_key = ("K_F", "K_R") if "K_F" in content else ("success", "locality")
        edits = top.objs(edit_key)
        keep = top.objs(keep_key, required=False) or []
        self._keep = [Probe(prompt=k.str("question"), target=k.answers("ground_truth")[0]) for k in keep]
        self._n = len(edits)
        return [e.data for e in edits]

    def convert(self, rec: Record) -> list[EditRequest]:
        question = rec.str("question")
        prompt, subject = slot_or_whole_input(question, rec.str("subject", required=False))
        gt = rec.answers("ground_truth")
        i = rec.index if isinstance(rec.index, int) else 0
        keep = getattr(self, "_keep", [])
        neighborhood = [p for j, p in enumerate(keep) if j % max(self._n, 1) == i]
        return [EditRequest(case_id=i, prompt=prompt, subject=subject, target_new=rec.str("target_new"),
                            target_true=gt[0], neighborhood=neighborhood,
                            meta={"ground_truth_aliases": gt[1:]})]
