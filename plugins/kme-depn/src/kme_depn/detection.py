"""Privacy-neuron detection and the privacy-neuron aggregator (Wu et al., 2023, §3.2–3.3).

A private text is a prompt followed by its private string (a phone number, a name; here a
memorised fact). Every FFN neuron's integrated-gradients attribution is summed over the
string's tokens, each attributed after the prompt and the tokens before it; the text's
privacy neurons are those above ``threshold`` × its largest attribution. A batch of private
texts is edited at once: the aggregator keeps the neurons that recur in at least ``share`` of
the texts (what they share is the memorisation of this kind of data, not one text's wording),
most frequent first.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kme import DatasetRecordError
from kme_editlib.neurons import above_threshold, continuation_attribution

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["PrivacyNeurons", "private_string", "privacy_neurons", "aggregate"]

NeuronKey = tuple[int, int]  # (layer, index)


@dataclass
class PrivacyNeurons:
    """The batch's aggregated neurons (deactivation order) and each text's own."""

    kept: list[NeuronKey]
    per_text: dict[str, dict[NeuronKey, float]]
    counts: dict[NeuronKey, int]


def private_string(r: "EditRequest") -> str:
    """The request's private data: ``meta["private"]``, else ``target_true``."""
    value = r.meta.get("private")
    value = value if isinstance(value, str) and value.strip() else r.target_true
    if not value or not value.strip():
        raise DatasetRecordError(f"request {r.case_id!r} has no private string",
                                 where=f"request {r.case_id!r}",
                                 hint="DEPN erases target_true (or meta.private): give each request the string "
                                      "the model should stop producing")
    return value


def privacy_neurons(model: "EditedModel", r: "EditRequest", layers: list[int], steps: int,
                    threshold: float) -> dict[NeuronKey, float]:
    """One text's privacy neurons with their summed attributions."""
    attr = continuation_attribution(model, r.text, private_string(r), layers, steps, what="private string")
    return above_threshold(attr, threshold)


def aggregate(per_text: dict[str, dict[NeuronKey, float]], share: float, max_neurons: int | None) -> PrivacyNeurons:
    """Neurons in at least ``share`` of the texts, most frequent first (ties: larger total attribution)."""
    counts: Counter[NeuronKey] = Counter()
    total: dict[NeuronKey, float] = {}
    for found in per_text.values():
        for key, value in found.items():
            counts[key] += 1
            total[key] = total.get(key, 0.0) + value
    need = max(1, math.ceil(share * len(per_text) - 1e-9))
    kept = sorted((k for k, c in counts.items() if c >= need), key=lambda k: (-counts[k], -total[k], k))
    return PrivacyNeurons(kept=kept[:max_neurons] if max_neurons else kept, per_text=per_text, counts=dict(counts))
