"""The AlphaEdit editor.

Preserved knowledge ``K₀`` is summarised by ``C = E[k kᵀ]`` over a corpus (as ROME/MEMIT);
``P = Û Ûᵀ`` projects onto the eigenvectors of ``C`` whose eigenvalues fall below
``nullspace_threshold``, so ``Δ P k₀ ≈ 0`` for preserved keys. With MEMIT's targets and
residual spread, each critical layer gets (AlphaEdit Eq. 15)

    Δ = R K₁ᵀ P (K_p K_pᵀ P + K₁ K₁ᵀ P + α I)⁻¹

where ``K_p`` are the keys of edits applied earlier in a sequence. Those keys are kept in
each edit's handle (``handle.state``, saved in patches), so undoing an edit also drops its
keys from later updates.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pydantic import Field

import kme
from kme import EditFailedError
from kme_editlib.defaults import param_source
from kme_editlib.params import MultiLayerParams

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["AlphaEditEditor", "AlphaEditParams"]

_PROJECTORS: dict[tuple, tuple["torch.Tensor", int]] = {}
STATE_PREFIX = "alphaedit.keys."


class AlphaEditParams(MultiLayerParams):
    nullspace_threshold: float = Field(2e-2, gt=0, description="eigenvalues of C below this span the null space")
    nullspace_relative: bool = Field(False, description="threshold relative to C's largest eigenvalue")
    L2: float = Field(10.0, ge=0, description="α, the ridge term of the update")


class AlphaEditEditor(kme.Editor):
    name = "alphaedit"
    description = "MEMIT's update projected onto the null space of preserved keys, for sequential editing (Fang et al., 2025)"
    Params = AlphaEditParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True, needs_covariance=True)

    def projector(self, model: "EditedModel", layer: int, cov: "torch.Tensor") -> tuple["torch.Tensor", int]:
        from kme_editlib.solvers import null_space_projector

        p: AlphaEditParams = self.params  # type: ignore[assignment]
        key = (model.base_fingerprint, layer, p.stats_corpus, p.stats_samples, p.stats_max_length,
               p.nullspace_threshold, p.nullspace_relative)
        if key not in _PROJECTORS:
            P, dim = null_space_projector(cov, p.nullspace_threshold, relative=p.nullspace_relative)
            if dim == 0:
                raise EditFailedError(
                    f"AlphaEdit's null space at layer {layer} is empty: every eigenvalue of C is at least "
                    f"{p.nullspace_threshold}{' × the largest' if p.nullspace_relative else ''}",
                    hint="raise nullspace_threshold (or set nullspace_relative: true)")
            _PROJECTORS[key] = (P, dim)
        return _PROJECTORS[key]

    def previous_gram(self, model: "EditedModel", layer: int) -> "torch.Tensor | None":
        """``K_p K_pᵀ`` over the keys of AlphaEdit edits still applied to the model."""
        gram = None
        for h in model.stack:
            k = h.state.get(f"{STATE_PREFIX}{layer}") if h.editor_name == self.name else None
            if k is not None:
                k = k.double()
                gram = k @ k.T if gram is None else gram + k @ k.T
        return gram

    def check_model(self, model: "EditedModel") -> None:
        super().check_model(model)
        self.params.check_stats(model)  # type: ignore[attr-defined]

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        from kme_editlib.keys import average_keys
        from kme_editlib.multilayer import even_spread, insert_over_layers
        from kme_editlib.solvers import null_space_update
        from kme_editlib.targets import optimise_targets

        p: AlphaEditParams = self.params  # type: ignore[assignment]
        if not p.mom2_adjustment:
            raise kme.ConfigError("AlphaEdit needs the key statistics (mom2_adjustment: true)",
                                         where="editor 'alphaedit' params")
        layers, source = p.critical_layers(model, location, param_source(self, "layers"))
        t0 = time.perf_counter()
        stats: dict = {}
        covs = p.second_moments(model, layers, info=stats)
        projectors = {layer: self.projector(model, layer, covs[layer]) for layer in layers}  # type: ignore[arg-type]
        t1 = time.perf_counter()
        prefixes = p.prefixes(model)
        point = (layers[-1], "block")
        res = optimise_targets(model, requests, [point], prefixes, p.target_config(), progress=p.progress)
        t2 = time.perf_counter()
        handle = model.new_handle(self, requests)
        grams = {layer: self.previous_gram(model, layer) for layer in layers}

        def solve(layer: int, K: "torch.Tensor", R: "torch.Tensor") -> "torch.Tensor":
            return null_space_update(K, R, projectors[layer][0], grams[layer], p.L2)

        per_layer = insert_over_layers(model, handle, requests, layers, point, res.target(point), prefixes,
                                       p.fact_token, solve=solve, spread=even_spread,
                                       key_groups=p.key_groups(prefixes))
        # the keys this edit wrote, as AlphaEdit's K_p for later edits: read after the update
        # of every layer, as the papers' code accumulates them
        final = average_keys(model, requests, layers, prefixes, p.fact_token, groups=p.key_groups(prefixes))
        for layer in layers:
            handle.state[f"{STATE_PREFIX}{layer}"] = final[layer].T.contiguous()
        handle.meta.update({
            "layers": layers, "layer_source": source, "statistics": stats, "stats_seconds": t1 - t0, "z_seconds": t2 - t1,
            "solve_seconds": time.perf_counter() - t2, "per_layer": per_layer,
            "nullspace_dims": {str(layer): projectors[layer][1] for layer in layers},
            "previous_edits": sum(1 for h in model.stack if h.editor_name == self.name),
            "z_loss_mean": sum(res.loss) / len(res.loss),
            "per_request": res.per_request(),
        })
        return handle
