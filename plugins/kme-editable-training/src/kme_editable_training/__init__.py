"""Editable Training (Sinitsin et al., ICLR 2020, "Editable Neural Networks"; survey section
5.3): the base model is meta-trained so that a few gradient-descent steps on an edit's loss
make the edit while leaving other inputs alone (L_base + c_edit·L_edit + c_loc·L_loc, the
last two measured after the k-step edit). ``kme train editable-training`` writes the
meta-trained weights; the ``editable-training`` editor installs them with its first edit and
edits them with the learned k-step gradient descent.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_editable_training.editor import EditableTrainingEditor

__all__ = ["EditableTrainingEditor", "PRESETS"]

#: Measured on the shipped fact-world model (docs/global-opt.md): locality prompts that share
#: the edit's relation and old object keep neighbouring subjects apart.
PRESETS = [
    kme.Preset(name="editable-training/factworld", editor="editable-training",
               model=kme.ModelMatch(alias="factworld"), params={"train": {"locality": "mixed"}},
               description="Editable Training on the fact world: half the locality prompts are neighbours",
               reference="docs/global-opt.md",
               notes={"train": "locality: mixed (random training facts and facts sharing the edit's relation and "
                               "old object) instead of random only"}),
]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(EditableTrainingEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
