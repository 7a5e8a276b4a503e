"""The SERAC editor: edits go to a cache; a query in the scope of a cached edit is answered by
the counterfactual model given that edit, any other query by the base model (survey Eq. 14).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

import kme
from kme import ConfigError

from kme_memlib.memory import MemoryEditor
from kme_serac.checkpoint import SeracCheckpoint
from kme_serac.training import TrainConfig, edit_descriptor

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location, MemoryHit

__all__ = ["SeracEditor", "SeracParams"]


class SeracParams(kme.Params, TrainConfig):
    """Where the trained models are and how queries are routed; the training settings
    (``classifier_steps``, ...; :class:`~kme_serac.training.TrainConfig`) apply when the editor
    is trained (``kme train serac``, or ``kme run`` with no checkpoint)."""

    checkpoint: str | None = Field(None, description="folder written by `kme train serac` (scope classifier + "
                                                     "counterfactual model, for this base model)")
    threshold: float | None = Field(None, gt=0, lt=1, description="least scope probability that routes a query "
                                                                  "(default: the checkpoint's, 0.5)")
    candidates: int = Field(16, ge=1, description="cached edits, nearest by TF-IDF first, that the scope "
                                                  "classifier examines per query (all when the cache is smaller)")


class SeracEditor(MemoryEditor):
    name = "serac"
    description = ("SERAC: an edit cache, a trained scope classifier and a trained counterfactual model that "
                   "answers in-scope queries; the base model answers the rest (Mitchell et al., 2022)")
    Params = SeracParams
    capabilities = kme.Capabilities(kind="memory", batch=True, sequential=True, needs_training=True)
    key_field = "edit"

    def _checkpoint(self, model: "EditedModel") -> SeracCheckpoint:
        p: SeracParams = self.params  # type: ignore[assignment]
        if not p.checkpoint:
            raise ConfigError("SERAC needs a trained checkpoint", where="editor 'serac' params.checkpoint",
                              hint="train one with `kme train serac --model MODEL --dataset DATASET --out DIR` "
                                   "and pass checkpoint: DIR (`kme run` trains one on the dataset's train "
                                   "split when none is named)")
        return SeracCheckpoint.load(p.checkpoint, model)

    def is_trained(self) -> bool:
        return bool(self.params.checkpoint)  # type: ignore[attr-defined]

    def train(self, model: "EditedModel", requests: list["EditRequest"], out_dir: str) -> dict[str, Any]:
        """Train both models with this editor's training params into ``out_dir`` (resuming
        from its ``train-state.pt`` when there is one): ``kme train serac`` calls it, and the
        runner when a pipeline names no checkpoint, so ``editors: [serac]`` works on a dataset
        with a train split."""
        from kme_serac import training

        cfg = TrainConfig(**self.params.model_dump(include=set(TrainConfig.model_fields)))
        training.train_serac(model, requests, out_dir, cfg)
        return {"checkpoint": out_dir}

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        ck = self._checkpoint(model)  # fail at edit time, not at the first query
        handle = model.new_handle(self, requests)
        handle.memory = [{"case_id": r.case_id, "edit": edit_descriptor(r)} for r in requests]
        handle.meta["serac"] = {"checkpoint": str(ck.path)}
        return handle

    def lookup(self, model: "EditedModel", handle: "EditHandle", prompts: list[str]) -> list["MemoryHit"]:
        handles = self.answering_handles(model, handle)
        if not handles:
            return []
        p: SeracParams = self.params  # type: ignore[assignment]
        ck = self._checkpoint(model)
        threshold = p.threshold if p.threshold is not None else float(ck.meta.get("threshold", 0.5))
        items, index = self.memory_index(model, handles)
        if not items:
            return []
        if len(items) <= p.candidates:
            cands = [list(range(len(items)))] * len(prompts)
        else:
            cands = [[j for j, _ in found] for found in index.search(prompts, p.candidates)]
        pairs = [(items[j]["edit"], prompts[i]) for i, js in enumerate(cands) for j in js]
        probs = ck.scope_probs(pairs)
        hits: list[Any] = []
        router = ck.router(model.pm)
        k = 0
        for i, js in enumerate(cands):
            scored = list(zip(js, probs[k:k + len(js)]))
            k += len(js)
            j, prob = max(scored, key=lambda t: t[1])
            if prob >= threshold:
                hits.append(kme.MemoryHit(prompt_index=i, source=self.name, context=ck.context(items[j]["edit"]),
                                          score=prob, router=router))
        return hits
