"""Params every fine-tuning editor shares: which weights, which loss, how to optimise."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

import kme

from kme_ftlib.losses import Objective

__all__ = ["Part", "FineTuneParams", "ConstrainedParams", "check_layers", "check_parts"]


def check_layers(v: list[int] | None) -> list[int] | None:
    """``layers`` as given, refused when it names a layer twice (a pydantic validator's body)."""
    if v is not None and len(set(v)) != len(v):
        raise ValueError(f"layers {v} name a layer twice")
    return v


def check_parts(v: list[str]) -> list[str]:
    """``parts`` as given, refused when it repeats a part or mixes ``block`` with others."""
    if len(set(v)) != len(v):
        raise ValueError(f"parts {v} name a part twice")
    if "block" in v and len(v) > 1:
        raise ValueError("'block' already includes every part of the block; give it alone")
    return v

#: What to train in each chosen block: a layout part's weight (and bias), or ``block``: every
#: parameter of the block.
Part = Literal["mlp_out", "mlp_in", "mlp_gate", "attn_out", "block"]


class FineTuneParams(kme.Params):
    """Defaults are ROME's FT settings for GPT-2 XL (``hparams/FT/gpt2-xl_constr.json``):
    layer 0's MLP output projection, 25 passes of Adam at lr 5e-4, stop below loss 1e-2."""

    layers: list[int] = Field(
        default_factory=lambda: [0], min_length=1,
        description="blocks whose weights are fine-tuned (negative counts from the end); a pipeline locator's "
                    "best layer replaces them unless they are given explicitly")
    parts: list[Part] = Field(
        default_factory=lambda: ["mlp_out"], min_length=1,
        description="what is trained in each block: mlp_out (the released code's MLP output projection), mlp_in, "
                    "mlp_gate, attn_out, or block (every parameter of the block)")
    include_bias: bool = Field(
        True, description="train a part's bias with its weight (ROME's FT selects GPT-2's c_proj module, bias "
                          "included)")
    objective: Objective = Field(
        "prompt_last", description="prompt_last: every target token scored at the last prompt token (ROME's FT, "
                                   "FT-L); target_new: teacher-forced NLL of the target tokens only (FT-M)")
    lr: float = Field(5e-4, gt=0, allow_inf_nan=False, description="Adam learning rate")
    steps: int = Field(25, ge=1, le=100_000, description="passes over the edit's requests (num_steps)")
    batch_size: int = Field(128, ge=1, description="requests per optimiser step within one edit")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False, description="Adam's (L2) weight decay")
    early_stop_loss: float | None = Field(
        1e-2, ge=0, allow_inf_nan=False,
        description="skip the step of a chunk whose loss is below this, and stop after a pass whose mean is "
                    "(the released code's 1e-2); null: always run every step")

    @field_validator("layers")
    @classmethod
    def _distinct_layers(cls, v: list[int]) -> list[int]:
        return check_layers(v)

    @field_validator("parts")
    @classmethod
    def _distinct_parts(cls, v: list[str]) -> list[str]:
        return check_parts(v)


class ConstrainedParams(FineTuneParams):
    """FT-L / FT-M: fine-tuning with an optional L∞ bound on each weight's change."""

    norm_constraint: float | None = Field(
        5e-4, gt=0, allow_inf_nan=False,
        description="L∞ radius ε: after every step each trained weight is clamped into [θ₀ − ε, θ₀ + ε] around "
                    "its value before the edit; null: unconstrained")
