"""The ``knowledge-neurons`` locator."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import kme

from kme_kn.params import AttributionParams

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest, Location

__all__ = ["KnowledgeNeuronsLocator"]


class KnowledgeNeuronsLocator(kme.Locator):
    name = "knowledge-neurons"
    description = "integrated-gradients attribution of FFN neurons to the fact; top neurons per fact (Dai et al., 2022)"
    Params = AttributionParams

    def locate(self, model: "EditedModel", requests: list["EditRequest"]) -> "Location":
        from kme_editlib.neurons import knowledge_neurons

        p: AttributionParams = self.params  # type: ignore[assignment]
        per_request: dict[str, list[list[float]]] = {}
        union: dict[str, set[int]] = defaultdict(set)
        mass: dict[int, float] = defaultdict(float)
        for r in requests:
            found = knowledge_neurons(model, r, **p.attribution_kwargs())
            per_request[str(r.case_id)] = [[n.layer, n.index, n.attribution, n.activation] for n in found]
            for n in found:
                union[model.layout.name(n.layer, "mlp_out")].add(n.index)
                mass[n.layer] += n.attribution
        layers = sorted(mass, key=lambda layer: -mass[layer])
        return kme.Location(locator=self.name, layers=layers, modules=sorted(union),
                            neurons={k: sorted(v) for k, v in sorted(union.items())},
                            scores={"per_request": per_request, "layer_attribution": {str(k): v for k, v in mass.items()},
                                    "layout": "per_request[case_id] = [[layer, neuron, attribution, activation], ...]"})
