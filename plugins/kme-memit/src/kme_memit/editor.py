"""The MEMIT editor.

For a batch of edits and critical layers ``l₁ < … < L``:

1. ``z_i = h_i^L + δ_i``: ``δ_i`` added to the residual stream after block ``L`` at each
   request's subject token, optimised for all requests in one batched run (MEMIT Eq. 16;
   :mod:`kme_editlib.targets`);
2. for each layer from the lowest: keys ``K`` averaged over random prefixes, residual
   ``R = (z − h^L) / (layers left)``, ``Δ = R Kᵀ (λ C + K Kᵀ)⁻¹`` (MEMIT Eq. 14; survey
   Eq. 27), applied before the next layer is visited.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import kme
from kme_editlib.defaults import mom2_update_weight, param_source
from kme_editlib.params import MultiLayerParams

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["MEMITEditor", "MEMITParams"]


class MEMITParams(MultiLayerParams):
    pass


class MEMITEditor(kme.Editor):
    name = "memit"
    description = "mass editing: least-squares updates of several MLP layers, residual spread evenly (Meng et al., 2023)"
    Params = MEMITParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True, needs_covariance=True)

    def check_model(self, model: "EditedModel") -> None:
        super().check_model(model)
        self.params.check_stats(model)  # type: ignore[attr-defined]

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        from kme_editlib.multilayer import even_spread, insert_over_layers
        from kme_editlib.solvers import mass_update
        from kme_editlib.targets import optimise_targets

        p: MEMITParams = self.params  # type: ignore[assignment]
        layers, source = p.critical_layers(model, location, param_source(self, "layers"))
        lam, lam_source = mom2_update_weight(model, p.mom2_update_weight, layers[0],
                                             param_source(self, "mom2_update_weight"))
        t0 = time.perf_counter()
        stats: dict = {}
        covs = p.second_moments(model, layers, info=stats)
        t1 = time.perf_counter()
        prefixes = p.prefixes(model)
        point = (layers[-1], "block")
        res = optimise_targets(model, requests, [point], prefixes, p.target_config(), progress=p.progress)
        t2 = time.perf_counter()
        handle = model.new_handle(self, requests)
        per_layer = insert_over_layers(
            model, handle, requests, layers, point, res.target(point), prefixes, p.fact_token,
            solve=lambda layer, K, R: mass_update(K, R, covs[layer], lam), spread=even_spread,
            key_groups=p.key_groups(prefixes))
        handle.meta.update({
            "layers": layers, "layer_source": source, "statistics": stats, "mom2_update_weight": lam, "mom2_update_weight_source": lam_source, "stats_seconds": t1 - t0,
            "z_seconds": t2 - t1, "solve_seconds": time.perf_counter() - t2, "per_layer": per_layer,
            "z_loss_mean": sum(res.loss) / len(res.loss), "z_steps_mean": sum(res.steps) / len(res.steps),
            "per_request": res.per_request(),
        })
        return handle
