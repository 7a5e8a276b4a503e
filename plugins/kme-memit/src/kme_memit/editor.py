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

from typing import TYPE_CHECKING, Any

from kme_editlib.editors import MultiLayerEditor
from kme_editlib.params import MultiLayerParams

if TYPE_CHECKING:  # pragma: no cover
    from kme_editlib.targets import TargetResult

__all__ = ["MEMITEditor", "MEMITParams"]


class MEMITParams(MultiLayerParams):
    pass


class MEMITEditor(MultiLayerEditor):
    name = "memit"
    description = "mass editing: least-squares updates of several MLP layers, residual spread evenly (Meng et al., 2023)"
    Params = MEMITParams

    def record(self, model: Any, res: "TargetResult", layers: list[int], covs: dict) -> dict[str, Any]:
        return {**super().record(model, res, layers, covs), "z_steps_mean": sum(res.steps) / len(res.steps)}
