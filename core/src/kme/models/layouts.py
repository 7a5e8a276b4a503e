"""Architecture layouts: where the parts every editor needs live inside a model family.

Methods never guess module names from a model's name: they ask the layout registered for the
model's ``config.model_type``. Paths are dotted attribute paths; per-block parts are
relative to the block.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

__all__ = ["ModelLayout", "ModelAlias", "Part"]

Part = Literal["block", "attn", "attn_out", "mlp", "mlp_in", "mlp_gate", "mlp_out", "ln_attn", "ln_mlp"]


class ModelAlias(BaseModel):
    """A short model name that resolves to a local directory or hub id."""

    model_config = ConfigDict(extra="forbid")
    name: str
    target: str
    description: str = ""


class ModelLayout(BaseModel):
    """Module paths of one architecture family.

    ``conv1d`` marks GPT-2-style ``Conv1D`` projections, whose weight is stored
    ``[in_features, out_features]`` (transposed with respect to ``nn.Linear``).
    ``mlp_in`` is the projection that produces the MLP's hidden activation (``up_proj`` in
    gated MLPs); the key an editor writes against is the *input* of ``mlp_out``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: str
    blocks: str
    attn: str
    attn_out: str
    mlp: str
    mlp_in: str
    mlp_out: str
    mlp_gate: str | None = None
    ln_attn: str | None = None
    ln_mlp: str | None = None
    embed: str
    final_norm: str
    lm_head: str
    conv1d: bool = False
    n_layer_attr: str = "num_hidden_layers"

    # -- resolution ---------------------------------------------------------------------
    def num_layers(self, model: torch.nn.Module) -> int:
        return len(get_module(model, self.blocks))

    def name(self, layer: int, part: Part) -> str:
        """Qualified module name, e.g. ``transformer.h.5.mlp.c_proj``."""
        if part == "block":
            return f"{self.blocks}.{layer}"
        rel = getattr(self, part)
        if rel is None:
            raise ValueError(f"layout {self.model_type!r} has no {part!r} module")
        return f"{self.blocks}.{layer}.{rel}"

    def module(self, model: torch.nn.Module, layer: int, part: Part) -> torch.nn.Module:
        n = self.num_layers(model)
        if not (-n <= layer < n):
            from kme.errors import KmeError

            raise KmeError(f"layer {layer} does not exist: the model has {n} layers (0..{n - 1})",
                           hint="pick a layer in range, or let a locator choose it")
        return get_module(model, self.name(layer % n, part))

    def weight_name(self, layer: int, part: Part) -> str:
        return self.name(layer, part) + ".weight"

    def out_weight_as_linear(self, weight: torch.Tensor) -> torch.Tensor:
        """View a projection weight as ``[out, in]`` whatever the storage convention."""
        return weight.T if self.conv1d else weight

    def top(self, model: torch.nn.Module, part: Literal["embed", "final_norm", "lm_head"]) -> torch.nn.Module:
        return get_module(model, getattr(self, part))

    def resolve_all(self, model: torch.nn.Module) -> dict[str, Any]:
        """Resolve every declared module on layer 0 and the top-level ones (used by tests)."""
        found: dict[str, Any] = {}
        for part in ("block", "attn", "attn_out", "mlp", "mlp_in", "mlp_out", "mlp_gate", "ln_attn", "ln_mlp"):
            if part == "block" or getattr(self, part) is not None:
                found[part] = self.module(model, 0, part)  # type: ignore[arg-type]
        for part in ("embed", "final_norm", "lm_head"):
            found[part] = self.top(model, part)  # type: ignore[arg-type]
        return found


def get_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """Resolve a dotted path; ``a|b`` tries alternatives (names that changed across
    transformers versions)."""
    if "|" in path:
        for alt in path.split("|"):
            try:
                return get_module(model, alt)
            except (AttributeError, IndexError):
                continue
        raise AttributeError(f"none of {path!r} exists in {type(model).__name__}")
    mod: Any = model
    for p in path.split("."):
        mod = mod[int(p)] if p.isdigit() else getattr(mod, p)
    return mod


BUILTIN_LAYOUTS = [
    ModelLayout(model_type="gpt2", blocks="transformer.h", attn="attn", attn_out="attn.c_proj", mlp="mlp",
                mlp_in="mlp.c_fc", mlp_out="mlp.c_proj", ln_attn="ln_1", ln_mlp="ln_2",
                embed="transformer.wte", final_norm="transformer.ln_f", lm_head="lm_head", conv1d=True),
    ModelLayout(model_type="gptj", blocks="transformer.h", attn="attn", attn_out="attn.out_proj", mlp="mlp",
                mlp_in="mlp.fc_in", mlp_out="mlp.fc_out", ln_attn="ln_1", ln_mlp="ln_1",
                embed="transformer.wte", final_norm="transformer.ln_f", lm_head="lm_head"),
    ModelLayout(model_type="gpt_neox", blocks="gpt_neox.layers", attn="attention", attn_out="attention.dense",
                mlp="mlp", mlp_in="mlp.dense_h_to_4h", mlp_out="mlp.dense_4h_to_h",
                ln_attn="input_layernorm", ln_mlp="post_attention_layernorm",
                embed="gpt_neox.embed_in", final_norm="gpt_neox.final_layer_norm", lm_head="embed_out|lm_head"),
] + [
    ModelLayout(model_type=mt, blocks="model.layers", attn="self_attn", attn_out="self_attn.o_proj", mlp="mlp",
                mlp_in="mlp.up_proj", mlp_gate="mlp.gate_proj", mlp_out="mlp.down_proj",
                ln_attn="input_layernorm", ln_mlp="post_attention_layernorm",
                embed="model.embed_tokens", final_norm="model.norm", lm_head="lm_head")
    for mt in ("llama", "mistral", "qwen2")
]
