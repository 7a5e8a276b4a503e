"""The ``slag`` editor: KnowledgeEditor's hypernetwork and training recipe (from kme-hyperlib)
with SLAG's objective: the edit, its paraphrases and its entailed facts fitted, other and
neutral facts kept (KL), as a learned optimizer applied up to ``update_steps`` times."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kme_hyperlib.ke_editor import HypernetEditor, HypernetParams
from kme_hyperlib.ke_recipe import Recipe, recipe_from

__all__ = ["SLAGEditor", "SLAGParams"]


class SLAGParams(HypernetParams):
    """The learned-optimizer loop of an edit, and SLAG's training (the released
    ``learned_opt_main`` settings)."""

    update_steps: int = Field(5, ge=1, description="learned-optimizer steps per edit: the gradient is recomputed "
                                                   "at the updated weights and the network applied again until "
                                                   "the new object is top-1 on the edit prompt (`update_steps`)")
    optimizer: Literal["adamw", "rmsprop"] = Field("adamw", description="AdamW (no weight decay) as released")
    warmup: int = Field(0, ge=0, description="steps of linear learning-rate warm-up (released: none, then linear "
                                            "decay to 0)")
    grad_clip: float | None = Field(1.0, gt=0, description="gradient-norm clipping of the network (`max_grad_norm`)")
    learned_opt_steps: int = Field(5, ge=1, description="learned-optimizer steps per training edit (stops early "
                                                        "once the edit is top-1)")
    sequence: int = Field(1, ge=1, description="successive training edits whose updates accumulate before the "
                                               "model is reset (`learned_successive_updates`, r)")
    paraphrases: bool = Field(True, description="fit the edit's paraphrases (`fit_opt_to_paraphrases`)")
    entailed: bool = Field(True, description="fit the edit's entailed facts: the multi-hop questions whose answer "
                                             "follows from the new object (`fit_opt_to_dependent_propositions`)")
    neutral: bool = Field(True, description="keep the predictions on neutral facts (`fit_opt_to_independent_"
                                            "propositions`)")
    neutral_sources: list[Literal["neighbourhood", "same_subject"]] = Field(
        default_factory=lambda: ["neighbourhood", "same_subject"], min_length=1,
        description="neutral facts: the request's neighbourhood prompts and the same subject's other relations")
    max_neutral: int = Field(4, ge=1, description="neutral facts sampled per edit and step")
    lambda_main: float = Field(1.0, ge=0, description="weight of the edit's CE")
    lambda_kl: float = Field(1.0, ge=0, description="weight of the KL on other training facts")
    lambda_paraphrase: float = Field(1.0, ge=0, description="weight of the paraphrases' CE")
    lambda_entailed: float = Field(1.0, ge=0, description="weight of the entailed facts' CE")
    lambda_neutral: float = Field(1.0, ge=0, description="weight of the KL on neutral facts")


class SLAGEditor(HypernetEditor):
    name = "slag"
    description = ("SLAG: KnowledgeEditor's hypernetwork trained as a learned optimizer that also fits "
                   "paraphrases and entailed facts and keeps neutral ones (Hase et al., 2023)")
    Params = SLAGParams

    def recipe(self) -> Recipe:
        return recipe_from(self.params, objective="weighted", label_smoothing=0.0, use_views=False,
                           update_steps=self.params.learned_opt_steps)  # type: ignore[attr-defined]

    def edit_loop(self) -> dict[str, int]:
        return {"update_steps": self.params.update_steps}  # type: ignore[attr-defined]
