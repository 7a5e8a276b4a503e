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

from typing import TYPE_CHECKING, Any

from pydantic import Field

import kme
from kme import EditFailedError
from kme_editlib.editors import MultiLayerEditor
from kme_editlib.params import MultiLayerParams

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location
    from kme_editlib.editors import Solver
    from kme_editlib.targets import TargetResult

__all__ = ["AlphaEditEditor", "AlphaEditParams"]

STATE_PREFIX = "alphaedit.keys."


class AlphaEditParams(MultiLayerParams):
    nullspace_threshold: float = Field(2e-2, gt=0, description="eigenvalues of C below this span the null space")
    nullspace_relative: bool = Field(False, description="threshold relative to C's largest eigenvalue")
    L2: float = Field(10.0, ge=0, description="α, the ridge term of the update")


class AlphaEditEditor(MultiLayerEditor):
    name = "alphaedit"
    description = "MEMIT's update projected onto the null space of preserved keys, for sequential editing (Fang et al., 2025)"
    Params = AlphaEditParams

    def projector(self, model: "EditedModel", layer: int, cov: "torch.Tensor",
                  info: dict | None = None) -> tuple["torch.Tensor", int]:
        """``P`` and the null space's dimension at ``layer``: computed once per statistics and
        threshold, then from memory or disk (:func:`kme_editlib.factors.cached_null_space_projector`)."""
        from kme_editlib.factors import cached_null_space_projector

        p: AlphaEditParams = self.params  # type: ignore[assignment]
        P, dim = cached_null_space_projector(cov, p.nullspace_threshold, relative=p.nullspace_relative, info=info)
        if dim == 0:
            raise EditFailedError(
                f"AlphaEdit's null space at layer {layer} is empty: every eigenvalue of C is at least "
                f"{p.nullspace_threshold}{' × the largest' if p.nullspace_relative else ''}",
                hint="raise nullspace_threshold (or set nullspace_relative: true)")
        return P, dim

    def previous_gram(self, model: "EditedModel", layer: int) -> "torch.Tensor | None":
        """``K_p K_pᵀ`` over the keys of AlphaEdit edits still applied to the model."""
        gram = None
        for h in model.stack:
            k = h.state.get(f"{STATE_PREFIX}{layer}") if h.editor_name == self.name else None
            if k is not None:
                k = k.double()
                gram = k @ k.T if gram is None else gram + k @ k.T
        return gram

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        if not self.params.mom2_adjustment:  # type: ignore[attr-defined]
            raise kme.ConfigError("AlphaEdit needs the key statistics (mom2_adjustment: true)",
                                  where="editor 'alphaedit' params")
        return super().apply(model, requests, location)

    def solver(self, model: "EditedModel", layers: list[int], covs: dict) -> tuple["Solver", dict[str, Any]]:
        from kme_editlib.solvers import null_space_update

        p: AlphaEditParams = self.params  # type: ignore[assignment]
        from kme_editlib.factors import factor_meta

        infos: dict[int, dict] = {layer: {} for layer in layers}
        projectors = {layer: self.projector(model, layer, covs[layer], info=infos[layer]) for layer in layers}
        grams = {layer: self.previous_gram(model, layer) for layer in layers}

        def solve(layer: int, K: "torch.Tensor", R: "torch.Tensor") -> "torch.Tensor":
            return null_space_update(K, R, projectors[layer][0], grams[layer], p.L2)

        return solve, factor_meta(infos)

    def finish(self, model: "EditedModel", handle: "EditHandle", requests: list["EditRequest"], layers: list[int],
               prefixes: list[str]) -> None:
        """The keys this edit wrote, as AlphaEdit's ``K_p`` for later edits: read after the
        update of every layer, as the papers' code accumulates them."""
        from kme_editlib.keys import average_keys

        p: AlphaEditParams = self.params  # type: ignore[assignment]
        final = average_keys(model, requests, layers, prefixes, p.fact_token, groups=p.key_groups(prefixes))
        for layer in layers:
            handle.state[f"{STATE_PREFIX}{layer}"] = final[layer].T.contiguous()

    def record(self, model: "EditedModel", res: "TargetResult", layers: list[int], covs: dict) -> dict[str, Any]:
        return {"nullspace_dims": {str(layer): self.projector(model, layer, covs[layer])[1] for layer in layers},
                "previous_edits": sum(1 for h in model.stack if h.editor_name == self.name),
                **super().record(model, res, layers, covs)}
