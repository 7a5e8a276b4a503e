"""Which layers to edit and MEMIT's λ when nothing more specific says so.

Precedence for the layers (each editor records which applied):

1. ``layer`` / ``layers`` given in the pipeline's params;
2. a pipeline locator's best layer (single-layer editors edit it; multi-layer editors the
   window of layers that ends there);
3. ``layer`` / ``layers`` from a preset for the model (the papers' released settings for
   GPT-2 XL, GPT-J and Llama-3-8B; measured ones for the fact world: ``kme presets``);
4. a rule, scaled by depth (written for small models such as the fact world's; see
   docs/locate-edit.md for the measurements behind it):

   - single layer: ``floor(0.18 · n_layers)`` (GPT-J's 5/28; layer 0 of a 4-layer model);
   - a window of ``max(1, round(n_layers / 5))`` consecutive layers that ends at
     ``floor(0.28 · n_layers)`` (GPT-J's 3–8 ends at 8/28, Llama's 4–8 at 8/32).

MEMIT's λ without params or preset follows the MLP width: ``λ = d_ff · 15000 / 16384``
(GPT-J's ratio; see :func:`mom2_update_weight`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from kme import Component, EditedModel, Location

__all__ = ["LayerRule", "default_layers", "resolve_layers", "mom2_update_weight", "param_source"]

LayerRule = Literal["single", "window"]


def param_source(component: "Component", field: str) -> str:
    """Where ``field`` of a configured component came from: ``params``, ``preset:<plugin>``
    or ``default`` (``params`` when it was built without presets and the field was set)."""
    resolution = getattr(component, "resolution", None)
    if resolution is not None:
        return str(resolution.sources.get(field, "default"))
    return "params" if field in component.params.model_fields_set else "default"


def mom2_update_weight(model: "EditedModel", explicit: float | None, layer: int = 0,
                       source: str = "params") -> tuple[float, str]:
    """MEMIT's λ and where it comes from: params or preset (``source``), else the rule
    ``λ = d_ff · 15000 / 16384`` (GPT-J's ratio).

    Why a ratio: one new key ``k`` receives the share ``s / (λ + s)`` of its residual, where
    ``s = kᵀ C⁻¹ k`` is about ``d_ff`` for a typical key (``E[kᵀC⁻¹k] = tr(I) = d_ff``). A
    fixed λ = 15,000 on a model with ``d_ff = 512`` would write ~3% of each residual.
    """
    if explicit is not None:
        return explicit, source
    w = model.parameter(model.weight_name(layer, "mlp_out"))
    d_ff = int(model.layout.out_weight_as_linear(w).shape[1])
    return d_ff * 15000.0 / 16384.0, "rule"


def _rule(n: int, rule: LayerRule) -> list[int]:
    if rule == "single":
        return [int(0.18 * n)]
    end = int(0.28 * n)
    width = max(1, round(n / 5))
    return list(range(max(0, end - width + 1), end + 1))


def default_layers(model: "EditedModel", rule: LayerRule) -> tuple[list[int], str]:
    """The rule's layers for this model's depth, and ``"rule"``."""
    return _rule(model.num_layers, rule), "rule"


def resolve_layers(model: "EditedModel", rule: LayerRule, given: list[int] | None, location: "Location | None",
                   window: int | None = None, source: str = "params") -> tuple[list[int], str]:
    """Layers to edit and why (see the module docstring for the precedence). ``given`` are
    the configured layers and ``source`` where they came from (``params`` or
    ``preset:<plugin>``); a locator overrides preset layers but not explicit ones. Every
    layer is range-checked."""
    located = location is not None and bool(location.layers)
    if given and (source == "params" or not located):
        layers, why = list(given), source
    elif located:
        assert location is not None
        best = location.layers[0]
        if rule == "single":
            layers = [best]
        else:
            w = window or (len(given) if given else len(default_layers(model, rule)[0]))
            best = model.check_layer(best)
            layers = list(range(max(0, best - w + 1), best + 1))
        why = f"locator {location.locator}"
    else:
        layers, why = default_layers(model, rule)
    checked = sorted({model.check_layer(layer) for layer in layers})
    return checked, why
