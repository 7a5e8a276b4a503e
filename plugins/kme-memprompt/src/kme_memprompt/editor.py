"""The MemPrompt editor: feedback keyed by the question it corrects, retrieved above a threshold."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field

import kme
from kme import template_validator
from kme_memlib.facts import fact_text
from kme_memlib.retrieval import EmbedderName
from kme_memlib.textmemory import TextMemoryEditor

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest

__all__ = ["MemPromptEditor", "MemPromptParams"]


class MemPromptParams(kme.Params):
    threshold: float = Field(0.2, ge=0, le=1, description="least cosine similarity between the query and a "
                                                          "stored question for its feedback to apply")
    embedder: EmbedderName = Field("tfidf", description="tfidf (offline), lm or transformers (embedder_model)")
    embedder_model: str | None = Field(None, description="hub id or local path (embedder: transformers)")
    candidates: int = Field(1, ge=1, description="nearest stored questions considered per query")
    max_items: int = Field(1, ge=1, description="feedback items placed before a query at most")
    template: Annotated[str, template_validator(("feedback", "question"))] = Field("Note: {feedback}\n", description="how one feedback item reads before the query "
                                                            "({feedback}, {question})")


class MemPromptEditor(TextMemoryEditor):
    name = "memprompt"
    description = ("MemPrompt: a growing memory of corrective feedback keyed by question; the nearest "
                   "question's feedback is placed with the query above a similarity threshold (Madaan et al., 2022)")
    Params = MemPromptParams
    fields: ClassVar[tuple[str, ...]] = ("question", "feedback")
    key_field: ClassVar[str] = "question"

    def item_from_request(self, r: "EditRequest") -> dict[str, Any]:
        return {"question": r.text, "feedback": fact_text(r.text, r.target_new) + "."}

    def applies(self, query: str, item: dict[str, Any], score: float) -> bool:
        return score >= self.params.threshold  # type: ignore[attr-defined]
