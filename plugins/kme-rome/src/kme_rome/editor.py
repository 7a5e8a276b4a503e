"""The ROME editor.

One edit ``(s, r, o → o*)`` at MLP layer ``l``:

1. key ``k*``: the MLP key at the subject's last token, averaged flat over the bare prompt
   and the prompt preceded by each random prefix (ROME Eq. 3 and the released code;
   ``key_contexts: bare`` uses the bare prompt only);
2. value ``v* = v + δ``: ``δ`` added to the MLP output at that token so that the model
   predicts ``o*`` across the prefixes, with the KL and weight-decay terms (ROME Eq. 4;
   :mod:`kme_editlib.targets`);
3. ``Ŵ = W + Λ (C⁻¹k*)ᵀ``, ``Λ = (v* − W k − b) / ((C⁻¹k*)ᵀ k)`` with ``C = E[k kᵀ]`` over
   a corpus and ``k`` the bare prompt's key, so the edit holds exactly on the prompt itself
   (the released code; ``insert_at: average`` takes ``k = k*``, the paper's Eq. 2 and
   survey Eq. 26).

A batch of requests is applied as consecutive rank-one updates, each computed on the model
the previous ones left (ROME has no joint update; MEMIT is the batched method).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from kme_editlib.defaults import param_source, resolve_layers
from kme_editlib.editors import CovarianceEditor
from kme_editlib.params import StatsParams, TargetParams

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["ROMEEditor", "ROMEParams", "rome_update"]


class ROMEParams(TargetParams, StatsParams):
    layer: int | None = Field(None, description="MLP layer to edit (default: locator, published value, or rule)")
    key_contexts: Literal["prefixes", "bare"] = Field(
        "prefixes", description="average k* over the random prefixes (paper) or use the bare prompt")
    insert_at: Literal["bare", "average"] = Field(
        "bare", description="the constraint Ŵk = v* holds at the bare prompt's key with the update direction "
        "C⁻¹k* (the released code), or at the averaged key k* itself (the paper's Eq. 2)")
    key_average: Literal["by_context_kind", "flat"] = Field(
        "flat", description="k* averaged flat over the bare prompt and every prefix (ROME's released code), or "
        "within each kind of context and then over kinds (MEMIT's released code)")


class ROMEEditor(CovarianceEditor):
    name = "rome"
    description = "rank-one update of one MLP output projection using C⁻¹ (Meng et al., 2022)"
    Params = ROMEParams

    def __init__(self, params: "ROMEParams | dict | None" = None):
        super().__init__(params)
        self._ready: dict[tuple, dict] = {}

    def precompute(self, model: "EditedModel", batches: list[list["EditRequest"]]) -> None:
        """Keys and target vectors of the first request of every batch, in one batched
        optimisation on the unedited model (each request gets the vector it would get alone)."""
        p: ROMEParams = self.params  # type: ignore[assignment]
        if model.stack or not batches:
            return
        layers, _ = resolve_layers(model, "single", [p.layer] if p.layer is not None else None, None,
                                   source=param_source(self, "layer"))
        firsts = [b[0] for b in batches]
        self._ready = {}  # only the chunk at hand: a batch that failed must not leave stale entries
        for r, found in zip(firsts, rome_targets(model, firsts, layers[0], p.prefixes(model), p)):
            self._ready[_ready_key(r, layers[0])] = found

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        p: ROMEParams = self.params  # type: ignore[assignment]
        layers, source = resolve_layers(model, "single", [p.layer] if p.layer is not None else None, location,
                                        source=param_source(self, "layer"))
        layer = layers[0]
        t0 = time.perf_counter()
        stats: dict = {}
        cov = p.second_moments(model, [layer], info=stats)[layer]
        stats_s = time.perf_counter() - t0
        prefixes = p.prefixes(model)
        # what precompute() made from the unedited model serves the first request only: the
        # batch's later requests see the model its earlier rank-one updates left
        ready = self._ready.pop(_ready_key(requests[0], layer), None) if not model.stack else None
        handle = model.new_handle(self, requests)
        records = []
        for i, r in enumerate(requests):
            records.append(rome_update(model, handle, r, layer, cov, prefixes, p,
                                       ready=ready if i == 0 else None))
        handle.meta.update({
            "layer": layer, "layer_source": source, "statistics": stats, "stats_seconds": stats_s,
            "z_seconds": sum(x["z_seconds"] for x in records),
            "solve_seconds": sum(x["solve_seconds"] for x in records),
            "keys_seconds": sum(x["keys_seconds"] for x in records),
            "per_request": records,
        })
        return handle


def _ready_key(request: "EditRequest", layer: int) -> tuple:
    return (str(request.case_id), request.text, request.target_new, layer)


def rome_targets(model: "EditedModel", requests: list["EditRequest"], layer: int, prefixes: list[str],
                 p: ROMEParams) -> list[dict]:
    """For each request, on the model as it is: ``k*`` (averaged key), the key the constraint
    holds at, and ``v*`` (target value), computed for all requests together."""
    from kme_editlib.keys import average_keys
    from kme_editlib.targets import optimise_targets

    t0 = time.perf_counter()
    key_prefixes = prefixes if p.key_contexts == "prefixes" else [""]
    k_star = average_keys(model, requests, [layer], key_prefixes, p.fact_token,
                          groups=p.key_groups(key_prefixes))[layer]
    k_at = k_star if p.insert_at == "average" or p.key_contexts == "bare" else \
        average_keys(model, requests, [layer], [""], p.fact_token)[layer]
    t1 = time.perf_counter()
    point = (layer, "mlp_out")
    res = optimise_targets(model, requests, [point], prefixes, p.target_config())
    v_star = res.target(point).cpu()
    t2 = time.perf_counter()
    n = len(requests)
    return [{"k_star": k_star[i], "k_at": k_at[i], "v_star": v_star[i], "loss": res.loss[i], "nll": res.nll[i],
             "steps": res.steps[i], "delta_norm": float(res.delta[point][i].norm()),
             "keys_seconds": (t1 - t0) / n, "z_seconds": (t2 - t1) / n, "batched": n} for i in range(n)]


def rome_update(model: "EditedModel", handle: "EditHandle", request: "EditRequest", layer: int,
                cov: "torch.Tensor | None", prefixes: list[str], p: ROMEParams, ready: dict | None = None) -> dict:
    """Compute and apply one rank-one update through ``handle``; returns what it measured.
    ``ready``: this request's keys and target from :func:`rome_targets` on the same model state."""
    from kme_editlib.hooks import mlp_out_weight, to_storage
    from kme_editlib.factors import cov_factor
    from kme_editlib.solvers import rank_one_update

    found = ready if ready is not None else rome_targets(model, [request], layer, prefixes, p)[0]
    k_star, k_at, v_star = found["k_star"], found["k_at"], found["v_star"]
    t2 = time.perf_counter()
    name, W, b = mlp_out_weight(model, layer)
    factor: dict = {}  # C is factorised once per statistics file and reused (kme_editlib.factors)
    delta = rank_one_update(W.cpu(), cov, k_at, v_star, None if b is None else b.cpu(), direction=k_star,
                            factor=None if cov is None else cov_factor(cov, info=factor))
    handle.add_delta(name, to_storage(model, delta))
    t3 = time.perf_counter()
    return {"case_id": request.case_id, "loss": found["loss"], "nll": found["nll"], "steps": found["steps"],
            "delta_norm": found["delta_norm"], "keys_seconds": found["keys_seconds"],
            "z_seconds": found["z_seconds"], "solve_seconds": t3 - t2, **factor,
            "targets_computed_with": found["batched"]}
