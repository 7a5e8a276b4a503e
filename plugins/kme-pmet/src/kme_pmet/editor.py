"""The PMET editor.

MEMIT optimises the residual stream after the last critical layer, which mixes what the
attention and the FFN contribute. PMET optimises the two hidden states of the last critical
layer ``L`` jointly — an offset on the attention output and one on the FFN output at the
subject's token, with the same loss, KL, weight decay and clamp as MEMIT — and uses only the
FFN's optimised output ``m_i^L + δ_i^m`` as the target for the FFN weights. The residual is
measured at the FFN output of ``L`` and spread to the lower critical layers by a square root
(``R / √(layers left)``), which leaves a larger share to each layer than MEMIT's ``R / n``;
each layer is solved by MEMIT's ``Δ = R Kᵀ (λ C + K Kᵀ)⁻¹``. Attention weights are optimised
through, not edited.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import kme
from kme_editlib.defaults import mom2_update_weight, param_source
from kme_editlib.params import MultiLayerParams

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["PMETEditor", "PMETParams"]


class PMETParams(MultiLayerParams):
    pass


class PMETEditor(kme.Editor):
    name = "pmet"
    description = "joint attention+FFN hidden-state targets, FFN-only update with square-root residual spread (Li et al., 2024)"
    Params = PMETParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True, needs_covariance=True)

    def check_model(self, model: "EditedModel") -> None:
        super().check_model(model)
        self.params.check_stats(model)  # type: ignore[attr-defined]

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        from kme_editlib.multilayer import insert_over_layers, sqrt_spread
        from kme_editlib.solvers import mass_update
        from kme_editlib.targets import optimise_targets

        p: PMETParams = self.params  # type: ignore[assignment]
        layers, source = p.critical_layers(model, location, param_source(self, "layers"))
        lam, lam_source = mom2_update_weight(model, p.mom2_update_weight, layers[0],
                                             param_source(self, "mom2_update_weight"))
        t0 = time.perf_counter()
        stats: dict = {}
        covs = p.second_moments(model, layers, info=stats)
        t1 = time.perf_counter()
        prefixes = p.prefixes(model)
        top = layers[-1]
        attn, ffn = (top, "attn_out"), (top, "mlp_out")
        res = optimise_targets(model, requests, [attn, ffn], prefixes, p.target_config(), progress=p.progress)
        t2 = time.perf_counter()
        handle = model.new_handle(self, requests)
        per_layer = insert_over_layers(
            model, handle, requests, layers, ffn, res.target(ffn), prefixes, p.fact_token,
            solve=lambda layer, K, R: mass_update(K, R, covs[layer], lam), spread=sqrt_spread,
            key_groups=p.key_groups(prefixes))
        handle.meta.update({
            "layers": layers, "layer_source": source, "statistics": stats, "mom2_update_weight": lam,
            "mom2_update_weight_source": lam_source, "stats_seconds": t1 - t0, "z_seconds": t2 - t1,
            "solve_seconds": time.perf_counter() - t2, "per_layer": per_layer,
            "attn_delta_norm_mean": float(res.delta[attn].norm(dim=-1).mean()),
            "ffn_delta_norm_mean": float(res.delta[ffn].norm(dim=-1).mean()),
            "z_loss_mean": sum(res.loss) / len(res.loss),
            "per_request": res.per_request(),
        })
        return handle
