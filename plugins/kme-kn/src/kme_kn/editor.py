"""The ``kn`` editor: update the value slots of a fact's knowledge neurons (Dai et al., §5.1).

Neuron ``i`` of layer ``l`` writes its value slot — column ``i`` of the FFN output projection
— into the residual stream in proportion to its activation. Updating a fact subtracts the
old object's embedding from the slots of the fact's knowledge neurons and adds the new
object's: ``v_i ← v_i − λ₁·E(o) + λ₂·E(o*)`` (paper: λ₁ = 1, λ₂ = 8). ``E`` is the output
embedding (the unembedding row of the object's first token), the space the value slots
write into. Where an activation is negative (SiLU / gated MLPs; BERT's GELU neurons that
the paper studied are positive when they fire) the slot writes with the opposite sign, so the
change is applied with the sign of the neuron's activation on the edit prompt.

Neurons come from the pipeline's ``knowledge-neurons`` locator when it located this request,
otherwise from the same attribution run here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

import kme

from kme_kn.params import AttributionParams

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["KNEditor", "KNParams"]


class KNParams(AttributionParams):
    lambda_erase: float = Field(1.0, ge=0, description="λ₁: weight of the old object's embedding removed")
    lambda_add: float = Field(8.0, ge=0, description="λ₂: weight of the new object's embedding added")


class KNEditor(kme.Editor):
    name = "kn"
    description = "rewrite the value slots of located knowledge neurons: v − λ₁E(o) + λ₂E(o*) (Dai et al., 2022)"
    Params = KNParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True)

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        import torch

        from kme_editlib.hooks import to_storage
        from kme_editlib.tokens import target_ids_of
        from kme_editlib.neurons import knowledge_neurons

        p: KNParams = self.params  # type: ignore[assignment]
        located = {}
        if location is not None and location.locator == "knowledge-neurons":
            located = location.scores.get("per_request", {})
        unembed = model.layout.top(model.model, "lm_head").weight.detach().float()
        updates: dict[int, torch.Tensor] = {}
        found_per_request = {}
        for r in requests:
            if str(r.case_id) in located:
                neurons = [(int(x[0]), int(x[1]), float(x[3]) if len(x) > 3 else 1.0)
                           for x in located[str(r.case_id)]]
                source = "locator"
            else:
                neurons = [(n.layer, n.index, n.activation)
                           for n in knowledge_neurons(model, r, **p.attribution_kwargs())]
                source = "attribution"
            if not neurons:
                raise kme.EditFailedError(
                    f"request {r.case_id!r}: no knowledge neuron passed the threshold",
                    hint="lower threshold, or attribute more layers")
            new = unembed[target_ids_of(model, r.text, r.target_new)[0]]
            change = p.lambda_add * new
            if r.target_true:
                change = change - p.lambda_erase * unembed[target_ids_of(model, r.text, r.target_true, what="target_true")[0]]
            for layer, i, act in neurons:
                if layer not in updates:
                    w = model.parameter(model.weight_name(layer, "mlp_out"))
                    updates[layer] = torch.zeros_like(model.layout.out_weight_as_linear(w.detach()), dtype=torch.float32)
                sign = -1.0 if act < 0 else 1.0
                updates[layer][:, i] += sign * change.to(updates[layer].device)
            found_per_request[str(r.case_id)] = {"neurons": [[layer, i] for layer, i, _ in neurons],
                                                 "source": source}
        handle = model.new_handle(self, requests)
        for layer, d in sorted(updates.items()):
            handle.add_delta(model.weight_name(layer, "mlp_out"), to_storage(model, d))
        handle.meta["neurons"] = found_per_request
        return handle
