"""Which layers to edit: the papers' published choices where they exist, a rule elsewhere.

Published (ROME, MEMIT, AlphaEdit papers and their released hyperparameters):

| model | ROME | MEMIT / PMET / AlphaEdit |
|---|---|---|
| GPT-2 XL (48 × 1600) | 17 | 13–17 |
| GPT-J 6B (28 × 4096) | 5 | 3–8 |
| Llama 7B/8B (32 × 4096) | – | 4–8 |

Any other model, when no locator chose the layer (rule, written for small models as the fact
world's and scaled by depth; see docs/locate-edit.md for the measurements behind it):

- ROME edits layer ``floor(0.18 · n_layers)`` (GPT-J's 5/28; layer 0 of a 4-layer model);
- MEMIT-family editors edit the ``max(1, round(n_layers / 5))`` consecutive layers that end
  at ``floor(0.28 · n_layers)`` (GPT-J's 3–8 ends at 8/28, Llama's 4–8 at 8/32);
- MEMIT's λ is scaled with the MLP width: ``λ = d_ff · 15000 / 16384`` (GPT-J's ratio; see
  :func:`mom2_update_weight`).

A pipeline's locator (``causal-tracing``) overrides the rule: ROME edits the layer it ranks
first, MEMIT the window that ends there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, Location

__all__ = ["PUBLISHED", "MEASURED", "PUBLISHED_MOM2_WEIGHT", "model_key", "default_layers", "resolve_layers",
           "mom2_update_weight"]

Method = Literal["rome", "memit"]

# (model_type, n_layers, hidden size) -> method -> layers
PUBLISHED: dict[tuple[str, int, int], dict[str, list[int]]] = {
    ("gpt2", 48, 1600): {"rome": [17], "memit": [13, 14, 15, 16, 17]},
    ("gptj", 28, 4096): {"rome": [5], "memit": [3, 4, 5, 6, 7, 8]},
    ("llama", 32, 4096): {"memit": [4, 5, 6, 7, 8]},
}

# Measured on the fact-world model (GPT-2, 4 layers × 128; docs/locate-edit.md): only
# layer 0 edits reliably through the subject's tokens.
MEASURED: dict[tuple[str, int, int], dict[str, list[int]]] = {
    ("gpt2", 4, 128): {"rome": [0], "memit": [0, 1]},
}

# MEMIT's λ ("mom2_update_weight"): GPT-2 XL 20,000, GPT-J 15,000 (Llama: AlphaEdit's 15,000)
PUBLISHED_MOM2_WEIGHT: dict[tuple[str, int, int], float] = {
    ("gpt2", 48, 1600): 20000.0,
    ("gptj", 28, 4096): 15000.0,
    ("llama", 32, 4096): 15000.0,
}


def mom2_update_weight(model: "EditedModel", explicit: float | None, layer: int = 0) -> tuple[float, str]:
    """MEMIT's λ and where it comes from: explicit, else published for the model, else the
    rule ``λ = d_ff · 15000 / 16384`` (GPT-J's ratio).

    Why a ratio: one new key ``k`` receives the share ``s / (λ + s)`` of its residual, where
    ``s = kᵀ C⁻¹ k`` is about ``d_ff`` for a typical key (``E[kᵀC⁻¹k] = tr(I) = d_ff``). A
    fixed λ = 15,000 on a model with ``d_ff = 512`` would write ~3% of each residual.
    """
    if explicit is not None:
        return explicit, "params"
    pub = PUBLISHED_MOM2_WEIGHT.get(model_key(model))
    if pub is not None:
        return pub, "published"
    w = model.parameter(model.weight_name(layer, "mlp_out"))
    d_ff = int(model.layout.out_weight_as_linear(w).shape[1])
    return d_ff * 15000.0 / 16384.0, "rule"


def model_key(model: "EditedModel") -> tuple[str, int, int]:
    cfg = model.model.config
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 0)
    return (model.layout.model_type, model.num_layers, int(hidden))


def _rule(n: int, method: Method) -> list[int]:
    if method == "rome":
        return [int(0.18 * n)]
    end = int(0.28 * n)
    width = max(1, round(n / 5))
    return list(range(max(0, end - width + 1), end + 1))


def default_layers(model: "EditedModel", method: Method) -> tuple[list[int], str]:
    """Layers and where they come from (``published``, ``measured`` or ``rule``)."""
    key = model_key(model)
    pub = PUBLISHED.get(key, {}).get(method)
    if pub is not None:
        return list(pub), "published"
    measured = MEASURED.get(key, {}).get(method)
    if measured is not None:
        return list(measured), "measured"
    return _rule(model.num_layers, method), "rule"


def resolve_layers(model: "EditedModel", method: Method, explicit: list[int] | None,
                   location: "Location | None", window: int | None = None) -> tuple[list[int], str]:
    """Explicit params first, then a locator's best layer (MEMIT: the window ending there),
    then the published value or the rule. Every layer is range-checked."""
    if explicit:
        layers, source = list(explicit), "params"
    elif location is not None and location.layers:
        best = location.layers[0]
        if method == "rome":
            layers = [best]
        else:
            w = window or len(default_layers(model, method)[0])
            best = model.check_layer(best)
            layers = list(range(max(0, best - w + 1), best + 1))
        source = f"locator {location.locator}"
    else:
        layers, source = default_layers(model, method)
    checked = sorted({model.check_layer(layer) for layer in layers})
    return checked, source
