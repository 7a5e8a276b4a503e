"""The ``kgeditor`` editor: an extra FFN layer in chosen blocks stores the new knowledge; a
KnowledgeEditor-style hypernetwork, trained on a dataset's train split, writes the layer's
weights from each edit's text and gradient (LM variant of Cheng et al., 2023)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from kme_hyperlib.ke_editor import HypernetEditor, HypernetParams
from kme_hyperlib.ke_recipe import KETarget, Recipe, recipe_from
from kme_kgeditor.extra_ffn import EDITOR, ExtraFFNTarget

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["KGEditorEditor", "KGEditorParams"]


class KGEditorParams(HypernetParams):
    """The edit loop, and KGEditor's training (the released E-FB15k237 script and ``run.py``
    defaults)."""

    max_repeats: int = Field(1, ge=1, description="apply the predicted change up to this many times until the new "
                                                  "object is top-1 on the edit prompt (the release applies it "
                                                  "once)")
    layers: list[int] = Field(  # type: ignore[assignment]
        default_factory=lambda: [-2, -1], min_length=1,
        description="blocks that get an extra FFN layer (released `kb_layer 10,11` of 12: the last two); a "
                    "checkpoint keeps its own")
    ex_size: int = Field(64, ge=1, description="width of the extra FFN layer (`ex_size`)")
    init_std: float | None = Field(None, gt=0, description="standard deviation of the extra layer's fixed random "
                                                           "input matrix (null: 1/√ex_size, which keeps ‖W_in a‖ "
                                                           "≈ ‖a‖; the release's random init is 0.02)")
    lr: float = Field(5e-4, gt=0, description="learning rate of the hypernetwork")
    batch_size: int = Field(8, ge=1, description="locality inputs per step (`stable_batch_size`)")
    edits_per_step: int = Field(2, ge=1, description="edits the network makes together per step (`edit_num`)")
    lr_alpha: float = Field(0.1, gt=0, description="learning rate of the Lagrange multiplier α")
    margin_kl: float = Field(0.1, gt=0, description="margin m of the constraint KL ≤ m (`margin_kl_max`; the "
                                                    "release never shrinks it)")


class KGEditorEditor(HypernetEditor):
    name = EDITOR
    description = ("KGEditor: an extra FFN layer in the last blocks whose weights a trained hypernetwork writes "
                   "per edit (LM variant of Cheng et al., 2023)")
    Params = KGEditorParams

    def recipe(self) -> Recipe:
        t: KGEditorParams = self.params  # type: ignore[assignment]
        return recipe_from(t, objective="lagrangian", margin_kl_max=t.margin_kl, margin_kl_min=t.margin_kl,
                           margin_shrink=1.0, label_smoothing=0.0, use_views=False, optimizer="rmsprop")

    def make_target(self, model: "EditedModel") -> KETarget:
        t: KGEditorParams = self.params  # type: ignore[assignment]
        return ExtraFFNTarget.new(model, t.layers, t.ex_size, t.seed, t.init_std)

    def target_from_checkpoint(self, model: "EditedModel", config: dict[str, Any],
                               tensors: dict[str, torch.Tensor], where: str) -> KETarget:
        return ExtraFFNTarget.from_config(model, config, tensors, where)

    def edit_loop(self) -> dict[str, int]:
        return {"max_repeats": self.params.max_repeats}  # type: ignore[attr-defined]
