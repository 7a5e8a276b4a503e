"""PPA: Plug-and-Play Adaptation (Lee et al., Findings of ACL 2022, "Plug-and-Play Adaptation
for Continuously-updated QA"; survey section 5.3).

Each edit batch trains its own LoRA plug-in on the model's FFN projections (with ``peft``;
the base weights stay frozen). A scope gate compares a query's representation by the original
model with the stored representations of every plug-in's training inputs: a query close enough
to one of them is answered with that plug-in switched on, every other query by the original
model. Plug-ins accumulate over sequential edits, each undoable on its own.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_ppa.editor import PpaEditor, PpaParams

__all__ = ["PpaEditor", "PpaParams"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(PpaEditor)
