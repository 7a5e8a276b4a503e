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

from typing import TYPE_CHECKING, Any

from kme_editlib.editors import MultiLayerEditor
from kme_editlib.multilayer import sqrt_spread
from kme_editlib.params import MultiLayerParams

if TYPE_CHECKING:  # pragma: no cover
    from kme_editlib.targets import TargetResult

__all__ = ["PMETEditor", "PMETParams"]


class PMETParams(MultiLayerParams):
    pass


class PMETEditor(MultiLayerEditor):
    name = "pmet"
    description = "joint attention+FFN hidden-state targets, FFN-only update with square-root residual spread (Li et al., 2024)"
    Params = PMETParams
    spread = staticmethod(sqrt_spread)

    def target_points(self, top: int) -> tuple[list[tuple[int, str]], tuple[int, str]]:
        """The attention and the FFN output of the top layer; the layers are solved for the FFN's."""
        return [(top, "attn_out"), (top, "mlp_out")], (top, "mlp_out")

    def record(self, model: Any, res: "TargetResult", layers: list[int], covs: dict) -> dict[str, Any]:
        attn, ffn = res.points
        return {"attn_delta_norm_mean": float(res.delta[attn].norm(dim=-1).mean()),
                "ffn_delta_norm_mean": float(res.delta[ffn].norm(dim=-1).mean()),
                **super().record(model, res, layers, covs)}
