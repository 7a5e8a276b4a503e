"""The ``depn`` editor: deactivate a batch's privacy neurons (Wu et al., 2023, §3.4).

A neuron writes its value slot (its column of the FFN output projection) into the residual
stream in proportion to its activation. Setting the slot to zero is the paper's edit: the
neuron's activation no longer reaches the output, for every input, exactly as if the neuron
were held at zero (the released code zeroes the same columns). The change is recorded as a
delta on the output projection, so undo restores the weights bit for bit.

``target_new`` is not used: DEPN removes data, it writes nothing in its place. Nor is a
pipeline locator's location: the detection over the private strings is the method itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import kme

from kme_depn.params import DEPNParams

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["DEPNEditor"]


class DEPNEditor(kme.Editor):
    name = "depn"
    description = ("detect privacy neurons (integrated gradients over the private string, aggregated over the batch) "
                   "and deactivate them (Wu et al., 2023)")
    Params = DEPNParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True)

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        import torch

        from kme_depn.detection import aggregate, privacy_neurons
        from kme_editlib.hooks import mlp_out_weight, to_storage

        p: DEPNParams = self.params  # type: ignore[assignment]
        layers = [model.check_layer(layer) for layer in (p.layers or range(model.num_layers))]
        per_text = {str(r.case_id): privacy_neurons(model, r, layers, p.ig_steps, p.threshold) for r in requests}
        found = aggregate(per_text, p.share, p.max_neurons)
        if not found.kept:
            raise kme.EditFailedError(
                f"no privacy neuron passed threshold {p.threshold} in {p.share:.0%} of the {len(requests)} texts",
                hint="lower threshold or share, or search more layers")
        by_layer: dict[int, list[int]] = {}
        for layer, i in found.kept:
            by_layer.setdefault(layer, []).append(i)
        handle = model.new_handle(self, requests)
        for layer, idx in sorted(by_layer.items()):
            name, w, _ = mlp_out_weight(model, layer)
            delta = torch.zeros_like(w)
            delta[:, idx] = -w[:, idx]
            handle.add_delta(name, to_storage(model, delta))
        handle.meta["neurons"] = [[layer, i] for layer, i in found.kept]
        handle.meta["frequency"] = [found.counts[k] for k in found.kept]
        handle.meta["per_request"] = [{"text_neurons": len(per_text[str(r.case_id)])} for r in requests]
        return handle
