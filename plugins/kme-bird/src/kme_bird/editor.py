"""The BIRD editor: ROME's rank-one edit with BIRD's bidirectional target objective.

One edit ``(s, r, o → o*)`` at MLP layer ``l``, as ROME (the authors built BIRD on ROME's
released code):

1. ``k*``: the MLP key at the subject's fact token, averaged over the bare prompt and the
   random prefixes;
2. ``v* = v + δ``: ``δ`` minimises ROME's loss (new object across the prefixes, KL, weight
   decay) plus ``α`` times BIRD's term (:mod:`kme_bird.objective`);
3. ``Ŵ = W + Λ (C⁻¹k*)ᵀ`` with the constraint at the bare prompt's key (``insert_at: bare``,
   ROME's released code) or at ``k*`` (``average``).

A batch is applied as consecutive rank-one updates, each computed on the model the previous
ones left. The relation phrases ``r``/``r⁻¹`` come from ``relation_phrases`` (by the request's
``relation``) or ``phrases`` (any other request); a request with neither is refused.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from kme import ConfigError, ModelLoadError
from kme_editlib.defaults import param_source, resolve_layers
from kme_editlib.editors import CovarianceEditor
from kme_editlib.params import StatsParams, TargetParams

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["BIRDEditor", "BIRDParams", "relation_phrases_of"]


class BIRDParams(TargetParams, StatsParams):
    layer: int | None = Field(None, description="MLP layer to edit (default: locator, published value, or rule)")
    alpha: float = Field(2e-4, ge=0, description="weight α of BIRD's term (the released code's 0.0002; 0 is ROME)")
    beta: float = Field(1.0, ge=0, description="weight β of the old-object part of the term (the released code's 1)")
    relation_phrases: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="relation -> [phrase, inverse phrase], e.g. capital: "
        "[has capital, is the capital of]; looked up by the request's relation")
    phrases: tuple[str, str] | None = Field(
        None, description="[phrase, inverse phrase] for requests whose relation relation_phrases lacks")
    insert_at: Literal["bare", "average"] = Field(
        "bare", description="the constraint holds at the bare prompt's key (ROME's released code) or at the "
        "prefix-averaged key k*")
    key_average: Literal["by_context_kind", "flat"] = Field(
        "flat", description="k* averaged flat over every context (ROME's released code) or per kind of context")

    @field_validator("relation_phrases")
    @classmethod
    def _nonempty(cls, v: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
        for rel, pair in v.items():
            if not all(x.strip() for x in pair):
                raise ValueError(f"relation {rel!r}: both phrases must be non-empty")
        return v


def relation_phrases_of(p: BIRDParams, requests: list["EditRequest"],
                        where: str = "editor 'bird' params") -> list[tuple[str, str]]:
    """Each request's ``(phrase, inverse phrase)``; a :class:`kme.ConfigError` naming the
    relation when neither ``relation_phrases`` nor ``phrases`` covers it."""
    out = []
    for r in requests:
        pair = p.relation_phrases.get(r.relation) if r.relation is not None else None
        pair = pair or p.phrases
        if pair is None:
            known = ", ".join(sorted(p.relation_phrases)) or "none"
            raise ConfigError(f"request {r.case_id!r}: no relation phrases for relation {r.relation!r} "
                              f"(relation_phrases has: {known})", where=f"{where}.relation_phrases",
                              hint="add the relation to relation_phrases as [phrase, inverse phrase], or set "
                                   "phrases for every other request")
        out.append(pair)
    return out


class BIRDEditor(CovarianceEditor):
    name = "bird"
    description = ("ROME's rank-one update with BIRD's bidirectional subject/object objective against the reversal "
                   "curse (Ma et al., 2023)")
    Params = BIRDParams

    def check_model(self, model: "EditedModel") -> None:
        super().check_model(model)
        if model.model.get_output_embeddings() is None:
            raise ModelLoadError(f"{type(model.model).__name__} has no output embeddings (LM head)",
                                 where="editor 'bird'", hint="BIRD reads the LM head's input: use a causal LM")

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        p: BIRDParams = self.params  # type: ignore[assignment]
        phrases = relation_phrases_of(p, requests)  # refused before anything is computed
        layers, source = resolve_layers(model, "single", [p.layer] if p.layer is not None else None, location,
                                        source=param_source(self, "layer"))
        layer = layers[0]
        t0 = time.perf_counter()
        stats: dict = {}
        cov = p.second_moments(model, [layer], info=stats)[layer]
        stats_s = time.perf_counter() - t0
        prefixes = p.prefixes(model)
        handle = model.new_handle(self, requests)
        records = [bird_update(model, handle, r, ph, layer, cov, prefixes, p) for r, ph in zip(requests, phrases)]
        handle.meta.update({
            "layer": layer, "layer_source": source, "statistics": stats, "stats_seconds": stats_s,
            "alpha": p.alpha, "beta": p.beta,
            "z_seconds": sum(x["z_seconds"] for x in records),
            "solve_seconds": sum(x["solve_seconds"] for x in records),
            "per_request": records,
        })
        return handle


def bird_update(model: "EditedModel", handle: "EditHandle", request: "EditRequest", phrases: tuple[str, str],
                layer: int, cov: "torch.Tensor | None", prefixes: list[str], p: BIRDParams) -> dict:
    """Compute and apply one rank-one update through ``handle``; returns what it measured."""
    from kme_editlib.factors import cov_factor
    from kme_editlib.hooks import mlp_out_weight, to_storage
    from kme_editlib.keys import average_keys
    from kme_editlib.solvers import rank_one_update
    from kme_editlib.targets import optimise_targets

    from kme_bird.objective import bird_term

    k_star = average_keys(model, [request], [layer], prefixes, p.fact_token, groups=p.key_groups(prefixes))[layer][0]
    k_at = k_star if p.insert_at == "average" else average_keys(model, [request], [layer], [""], p.fact_token)[layer][0]
    t1 = time.perf_counter()
    point = (layer, "mlp_out")
    extra = bird_term(model, [request], prefixes, [phrases], alpha=p.alpha, beta=p.beta, fact_token=p.fact_token) \
        if p.alpha > 0 else None
    res = optimise_targets(model, [request], [point], prefixes, p.target_config(), extra=extra)
    v_star = res.target(point)[0].cpu()
    t2 = time.perf_counter()
    name, W, b = mlp_out_weight(model, layer)
    factor: dict = {}
    delta = rank_one_update(W.cpu(), cov, k_at, v_star, None if b is None else b.cpu(), direction=k_star,
                            factor=None if cov is None else cov_factor(cov, info=factor))
    handle.add_delta(name, to_storage(model, delta))
    return {"case_id": request.case_id, "phrases": list(phrases), "loss": res.loss[0], "nll": res.nll[0],
            "bird_term": res.extra[0] if res.extra else None, "steps": res.steps[0],
            "delta_norm": float(res.delta[point][0].norm()), "z_seconds": t2 - t1,
            "solve_seconds": time.perf_counter() - t2, **factor}
