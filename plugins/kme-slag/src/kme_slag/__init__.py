"""SLAG (Hase et al., EACL 2023, "Methods for Measuring, Updating, and Visualizing Factual
Beliefs in Language Models"; survey section 5.3): KnowledgeEditor's hypernetwork, trained as a
learned optimizer whose objective also fits the edit's paraphrases and entailed facts and keeps
neutral facts unchanged. ``kme train slag`` (or a run with no checkpoint) trains it.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_slag.editor import SLAGEditor

__all__ = ["SLAGEditor", "PRESETS"]

#: Training budget for the shipped fact-world model (measured in docs/global-opt.md).
PRESETS = [
    kme.Preset(name="slag/factworld", editor="slag", model=kme.ModelMatch(alias="factworld"),
               params={"steps": 200}, description="SLAG trained on the fact world in a few CPU minutes",
               reference="docs/global-opt.md",
               notes={"steps": "200 steps of up to 5 learned-optimizer applications each (minutes on a CPU) "
                               "instead of the release's 5 epochs of its train split on a GPU"}),
]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(SLAGEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
