"""The ``ke`` editor: KnowledgeEditor's trained hypernetwork turns an edit's text and its
fine-tuning gradient into a change of every weight matrix of the model's blocks, in one
forward pass of the network (milliseconds), after a training run on a dataset's train split.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kme_hyperlib.ke_editor import HypernetEditor, HypernetParams
from kme_hyperlib.ke_recipe import Recipe, recipe_from

__all__ = ["KEEditor", "KEParams"]


class KEParams(HypernetParams):
    """The edit loop, and KnowledgeEditor's training (the released ``BartSeq2SeqAugmented``
    settings: the generative model's, as a causal LM is one)."""

    max_repeats: int = Field(5, ge=1, description="apply the predicted change up to this many times (1×, 2×, "
                                                  "...) until the new object is top-1 on the edit prompt, as "
                                                  "the released evaluation does; 1: apply it once")
    lr_alpha: float = Field(0.1, gt=0, description="learning rate of the Lagrange multiplier α (raised by "
                                                   "gradient ascent, kept ≥ 0)")
    margin_kl_max: float = Field(1e-3, gt=0, description="starting margin m of the constraint KL ≤ m")
    margin_kl_min: float = Field(1e-5, gt=0, description="smallest margin: m shrinks ×0.8 whenever held-out edit "
                                                         "success passes 0.9")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="label smoothing ε of the edit loss")
    use_views: bool = Field(True, description="add one paraphrase of the edit to the edit loss (`--use_views`, "
                                              "as the released training script runs)")
    optimizer: Literal["rmsprop", "adamw"] = Field("rmsprop", description="RMSprop (centred) as released, "
                                                                          "or AdamW")


class KEEditor(HypernetEditor):
    name = "ke"
    description = ("KnowledgeEditor: a hypernetwork, trained under a KL constraint, maps the edit and its gradient "
                   "to a change of the block weights (De Cao et al., 2021)")
    Params = KEParams

    def recipe(self) -> Recipe:
        return recipe_from(self.params, objective="lagrangian")  # type: ignore[attr-defined]

    def edit_loop(self) -> dict[str, int]:
        return {"max_repeats": self.params.max_repeats}  # type: ignore[attr-defined]
