"""The ``kaft`` component: a trainer registered beside the editors so that ``kme train kaft``
runs it. It declares ``capabilities.trains_base``: what it trains is a new base model, named
as a pipeline's ``model``, and a pipeline refuses it as an editor."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

import kme
from kme import Capabilities, ConfigError, EditRequest, Params

from kme_kaft.mix import MixConfig
from kme_kaft.training import TrainConfig, train_kaft

__all__ = ["KaftTrainer", "KaftParams", "MixParams"]


class MixParams(Params):
    """What the training contexts look like."""

    counterfactual_p: float = Field(0.8, ge=0, le=1, description="statements that state the new (counterfactual) "
                                    "object; the others state the true object")
    relevant_p: float = Field(0.5, ge=0, le=1, description="questions about the stated fact (answer: the context's "
                              "object); the others ask another subject or relation (answer: from memory)")
    demos_p: float = Field(0.5, ge=0, le=1, description="rows that start with demonstrations of the task")
    max_demos: int = Field(16, ge=0, description="most demonstrations before a row's own statement")
    max_distractors: int = Field(4, ge=0, description="most statements about other subjects next to it")
    phrasings: bool = Field(True, description="state and ask facts, half the time, in any phrasing of the relation "
                            "that the train split shows (false: the request's prompt and paraphrases only)")
    statement_prefixes: list[str] = Field(["New Fact:", "New fact:", "Fact:", "Update:", "Note:"], min_length=1)
    query_prefixes: list[str] = Field(["", "", "Prompt:", "Q:"], min_length=1)


class KaftParams(Params):
    """Training settings (defaults: a few CPU minutes on the fact-world model)."""

    steps: int = Field(300, ge=1, description="optimiser steps")
    lr: float = Field(1e-3, gt=0, description="AdamW peak learning rate (cosine decay after warm-up)")
    warmup: int = Field(20, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    rows: int = Field(8, ge=1, description="KAFT rows per step")
    rehearsal_every: int = Field(2, ge=0, description="every n-th step trains on plain fact text instead (0: never)")
    rehearsal_rows: int = Field(16, ge=1)
    corpus: str = Field("auto", description="rehearsal text: auto (the model's default corpus, else the requests' "
                        "true facts), none, or a registered corpus name")
    max_length: int = Field(512, ge=16, description="longest row in tokens (at most the model's positions)")
    grad_clip: float = Field(1.0, gt=0)
    save_every: int = Field(100, ge=0, description="steps between resumable states (0: only when interrupted)")
    seed: int = 0
    mix: MixParams = Field(default_factory=MixParams)

    @model_validator(mode="after")
    def _warmup_fits(self) -> "KaftParams":
        if self.warmup >= self.steps:
            raise ValueError(f"warmup ({self.warmup}) must be below steps ({self.steps})")
        return self

    def config(self) -> TrainConfig:
        values = self.model_dump()
        return TrainConfig(**{**values, "mix": MixConfig(**values["mix"])})


class KaftTrainer(kme.Editor):
    name: ClassVar[str] = "kaft"
    description: ClassVar[str] = ("KAFT (Li et al., 2023): fine-tunes the base model to answer from relevant context "
                                  "and from memory otherwise; `kme train kaft` writes a new base model")
    Params: ClassVar[type[Params]] = KaftParams
    capabilities: ClassVar[Capabilities] = Capabilities(kind="parametric", batch=True, sequential=True,
                                                        needs_training=True, trains_base=True)

    def is_trained(self) -> bool:
        return False

    def train(self, model: "kme.EditedModel", requests: list[EditRequest], out_dir: str) -> dict[str, Any]:
        p: KaftParams = self.params  # type: ignore[assignment]
        train_kaft(model, requests, out_dir, p.config())
        return {"model": out_dir}

    def apply(self, model: "kme.EditedModel", requests: list[EditRequest],
              location: "kme.Location | None" = None) -> "kme.EditHandle":
        raise ConfigError("kaft trains a base model and edits nothing", where="editors",
                          hint="`kme train kaft --model MODEL --dataset DATASET --out DIR`, then `model: DIR`")
