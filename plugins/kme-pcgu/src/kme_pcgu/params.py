"""PCGU's params: which weights are candidates, how they are partitioned and ranked, and the step."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

import kme

from kme_ftlib.params import Part, check_layers, check_parts

__all__ = ["PCGUParams", "Aggregation", "Direction", "Score"]

#: ``input``: one partition per output unit, holding every weight that feeds it (the released
#: code's default "input aggregation"); ``output``: one per input unit, its outgoing weights.
Aggregation = Literal["input", "output"]
#: Which gradient the step follows: ``advantaged`` (descend the advantaged completion's score,
#: the released default), ``disadvantaged`` (ascend the disadvantaged one's) or ``both``.
Direction = Literal["advantaged", "disadvantaged", "both"]
#: What is differentiated: ``logit`` (the raw logits of the completion's tokens, as the released
#: code does with the masked-LM head) or ``logprob`` (their teacher-forced log-probabilities).
Score = Literal["logit", "logprob"]


class PCGUParams(kme.Params):
    """Defaults follow the released code (``general_similarity_retrain.py``): input
    aggregation, the 10,000 most different partitions, plain SGD at lr 1e-5 on the advantaged
    gradient, 16 pairs per step, 5 passes."""

    layers: list[int] | None = Field(
        None, min_length=1,
        description="blocks whose parameters are candidates (negative counts from the end); null: every block "
                    "(the paper ranks every parameter of the network; embeddings are not candidates here)")
    parts: list[Part] = Field(
        default_factory=lambda: ["block"], min_length=1,
        description="what is a candidate in each block: block (every parameter), or mlp_out, mlp_in, mlp_gate, "
                    "attn_out")
    include_bias: bool = Field(True, description="biases and norms are candidates too (one partition each)")
    aggregation: Aggregation = Field(
        "input", description="input: a partition is one output unit's incoming weights (the paper's choice); "
                             "output: one input unit's outgoing weights")
    k: int = Field(10_000, ge=1, description="partitions updated per step: the k whose two gradients have the lowest "
                                             "cosine similarity (all of them when the model has fewer)")
    direction: Direction = Field(
        "advantaged", description="advantaged: lower the advantaged completion's score (the released default); "
                                  "disadvantaged: raise the disadvantaged one's; both: the two at once")
    score: Score = Field("logit", description="logit: raw logits of the completion's tokens (the released "
                                              "masked-LM code); logprob: their teacher-forced log-probabilities")
    lr: float = Field(1e-5, gt=0, allow_inf_nan=False, description="SGD learning rate (no momentum, as released)")
    steps: int = Field(5, ge=1, le=100_000, description="passes (epochs) over the edit's pairs")
    batch_size: int = Field(16, ge=1, description="pairs whose gradients are summed, ranked and stepped together")
    stop_gap: float | None = Field(
        None, allow_inf_nan=False,
        description="skip a chunk whose mean gap (per-token log-probability of advantaged minus disadvantaged) is "
                    "at most this, and stop after a pass where every chunk is; 0 equalises; null: every step (the "
                    "paper)")

    @field_validator("layers")
    @classmethod
    def _distinct_layers(cls, v: list[int] | None) -> list[int] | None:
        return check_layers(v)

    @field_validator("parts")
    @classmethod
    def _distinct_parts(cls, v: list[str]) -> list[str]:
        return check_parts(v)
