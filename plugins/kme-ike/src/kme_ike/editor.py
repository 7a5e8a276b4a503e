"""The IKE editor: stores each new fact with its k retrieved demonstrations; at inference the
stored fact nearest to the query, with its demonstrations, is placed before the query.

    f*(x) = f(demonstrations || "New Fact: <fact>" || "Prompt: " x)        (survey Eq. 15)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

import kme
from kme import render, template_validator

from kme_memlib.facts import fact_text
from kme_memlib.memory import MemoryEditor
from kme_memlib.retrieval import EmbedderName, Index, make_embedder

from kme_ike.demos import DEMO_TEMPLATE, QUERY_TEMPLATE, DemoSource, build_demos, load_demo_requests

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location, MemoryHit

__all__ = ["IKEEditor", "IKEParams"]

DEMO_FIELDS = ("fact", "prompt", "answer")
QUERY_FIELDS = ("fact",)


class IKEParams(kme.Params):
    k: int = Field(32, ge=0, description="demonstrations per edit, nearest first (the paper uses 32)")
    demos: DemoSource | None = Field(None, description="dataset whose train split supplies demonstrations, "
                                                       "e.g. {dataset: factworld}")
    demo_file: str | None = Field(None, description="JSON / JSON-lines file of EditRequest records to build "
                                                    "demonstrations from")
    demos_per_kind: int = Field(1, ge=1, description="update and retain demonstrations built per request")
    embedder: EmbedderName = Field("tfidf", description="tfidf (offline), lm (the edited model's hidden "
                                                        "states) or transformers (embedder_model)")
    embedder_model: str | None = Field(None, description="hub id or local path of a sentence-embedding model "
                                                          "(embedder: transformers)")
    facts_per_query: int = Field(1, ge=1, description="stored new facts placed before each query")
    max_context_tokens: int | None = Field(None, ge=1, description="token budget of the context (default: the "
                                                                   "model's context length minus 64)")
    demo_template: Annotated[str, template_validator(DEMO_FIELDS)] = Field(DEMO_TEMPLATE, description="format of a demonstration ({fact}, {prompt}, "
                                                          "{answer} = the answer with its leading space)")
    query_template: Annotated[str, template_validator(QUERY_FIELDS)] = Field(QUERY_TEMPLATE, description="format placed right before the query ({fact})")


_pools: dict[tuple[Any, ...], tuple[list[Any], Index]] = {}


class IKEEditor(MemoryEditor):
    name = "ike"
    description = ("IKE: in-context editing; each query gets the nearest stored new fact after k retrieved "
                   "copy/update/retain demonstrations (Zheng et al., 2023)")
    Params = IKEParams
    key_field = "fact"

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        p: IKEParams = self.params  # type: ignore[assignment]
        handle = model.new_handle(self, requests)
        pool, index = self._pool(model)
        budget = p.max_context_tokens or max(32, (model.context_length or 1024) - 64)
        items = []
        for r in requests:
            fact = fact_text(r.text, r.target_new)
            tail = render(p.query_template, QUERY_FIELDS, fact=fact)
            hits = index.search([f"New Fact: {fact}\nPrompt: {r.text}"], p.k)[0] if p.k and len(index) else []
            chosen = [pool[i] for i, _ in hits]
            # most similar last (next to the query); drop the least similar to fit the budget
            while chosen and _n_tokens(model, "".join(d.text for d in reversed(chosen)) + tail) + 16 > budget:
                chosen.pop()
            context = "".join(d.text for d in reversed(chosen)) + tail
            items.append({"case_id": r.case_id, "fact": fact, "context": context,
                          "demo_kinds": [d.kind for d in reversed(chosen)]})
        handle.memory = items
        handle.meta["ike"] = {"demo_pool": len(pool), "k": p.k,
                              "demos_used": [len(it["demo_kinds"]) for it in items]}
        return handle

    def lookup(self, model: "EditedModel", handle: "EditHandle", prompts: list[str]) -> list["MemoryHit"]:
        handles = self.answering_handles(model, handle)
        if not handles:
            return []
        p: IKEParams = self.params  # type: ignore[assignment]
        items, index = self.memory_index(model, handles, p.embedder, p.embedder_model)
        hits = []
        for i, found in enumerate(index.search(prompts, p.facts_per_query)):
            if not found:
                continue
            # several facts: the nearest goes last, right before the query
            context = "".join(items[j]["context"] if n == 0 else _fact_only(items[j], p)
                              for n, (j, _) in reversed(list(enumerate(found))))
            hits.append(kme.MemoryHit(prompt_index=i, source=self.name, context=context, score=found[0][1]))
        return hits

    # -- demonstrations -------------------------------------------------------------------
    def _pool(self, model: "EditedModel") -> tuple[list[Any], Index]:
        p: IKEParams = self.params  # type: ignore[assignment]
        key = (p.demos.model_dump_json() if p.demos else None, p.demo_file, p.demos_per_kind, p.demo_template,
               p.embedder, p.embedder_model, id(model) if p.embedder == "lm" else None)
        if key not in _pools:
            reqs = load_demo_requests(model, p.demos, p.demo_file)
            demos = build_demos(reqs, p.demos_per_kind, p.demo_template)
            _pools[key] = (demos, Index([d.text for d in demos], make_embedder(p.embedder, model,
                                                                              p.embedder_model)))
        return _pools[key]


def _fact_only(item: dict[str, Any], p: IKEParams) -> str:
    """A further retrieved fact, stated without demonstrations or query prefix."""
    return f"New Fact: {item['fact']}\n"


def _n_tokens(model: "EditedModel", text: str) -> int:
    return len(model.tokenizer(text, add_special_tokens=True)["input_ids"])
