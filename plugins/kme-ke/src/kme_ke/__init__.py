"""KnowledgeEditor (De Cao, Aziz and Titov, EMNLP 2021, "Editing Factual Knowledge in Language
Models"; survey section 5.3): a hypernetwork, trained on a dataset's train split under a KL
constraint that keeps other predictions, predicts from an edit's text and gradient the change
of the model's weight matrices. ``kme train ke`` (or a run with no checkpoint) trains it.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_ke.editor import KEEditor

__all__ = ["KEEditor", "PRESETS"]

#: Training budget for the shipped fact-world model (measured in docs/global-opt.md).
PRESETS = [
    kme.Preset(name="ke/factworld", editor="ke", model=kme.ModelMatch(alias="factworld"),
               params={"steps": 500}, description="KnowledgeEditor trained on the fact world in a few CPU minutes",
               reference="docs/global-opt.md",
               notes={"steps": "500 steps (minutes on a CPU) instead of the release's 200,000 on 4 GPUs: held-out "
                               "edit success plateaus after a few hundred"}),
]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(KEEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
