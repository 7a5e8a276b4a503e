"""The Language Patch editor: condition -> consequence patches behind a per-query gate.

The paper learns a gating head g(x, condition) and an interpreter that reads the consequence.
kme's gate needs no training: ``mention`` opens when the condition's words occur in the query
(conditions such as an entity name: "if the text is about Bob Jones"), ``similarity`` when the
retrieval similarity of query and condition passes ``threshold``. Among the open patches the
ones most similar to the query win (the paper applies the patch with the highest gate); the
model itself interprets the consequence in context.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

import kme
from kme import template_validator
from kme_memlib.facts import fact_text
from kme_memlib.retrieval import EmbedderName
from kme_memlib.textmemory import TextMemoryEditor

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest

__all__ = ["LanguagePatchEditor", "LanguagePatchParams"]


class LanguagePatchParams(kme.Params):
    gate: Literal["mention", "similarity"] = Field(
        "mention", description="mention: the condition's words occur in the query; similarity: query-condition "
                               "similarity >= threshold")
    threshold: float = Field(0.3, ge=0, le=1, description="gate threshold (gate: similarity)")
    embedder: EmbedderName = Field("tfidf", description="tfidf (offline), lm or transformers (embedder_model)")
    embedder_model: str | None = Field(None, description="hub id or local path (embedder: transformers)")
    candidates: int = Field(8, ge=1, description="patches, nearest first, whose gate is evaluated per query")
    max_items: int = Field(1, ge=1, description="patches applied to a query at most")
    template: Annotated[str, template_validator(("condition", "consequence"))] = Field("Note: {consequence}\n", description="how an applied patch reads before the query "
                                                               "({condition}, {consequence})")


def _mentions(query: str, condition: str) -> bool:
    words = re.findall(r"[\w']+", condition.lower())
    q = query.lower()
    return bool(words) and re.search(r"(?<![\w'])" + r"\W+".join(map(re.escape, words)) + r"(?![\w])", q) is not None


class LanguagePatchEditor(TextMemoryEditor):
    name = "language-patch"
    description = ("Language Patch: natural-language 'if condition, then consequence' patches applied when a "
                   "per-query gate opens; added or removed without retraining (Murty et al., 2022)")
    Params = LanguagePatchParams
    fields: ClassVar[tuple[str, ...]] = ("condition", "consequence")
    key_field: ClassVar[str] = "condition"

    def item_from_request(self, r: "EditRequest") -> dict[str, Any]:
        return {"condition": r.subject, "consequence": fact_text(r.text, r.target_new) + "."}

    def applies(self, query: str, item: dict[str, Any], score: float) -> bool:
        p: LanguagePatchParams = self.params  # type: ignore[assignment]
        if p.gate == "mention":
            return _mentions(query, item["condition"])
        return score >= p.threshold
