"""KGEditor (Cheng et al., 2023, "Editing Language Model-based Knowledge Graph Embeddings";
survey section 5.3), LM variant: the paper edits BERT-based knowledge-graph embeddings; here
an extra FFN layer is added to chosen blocks of a causal LM and a KnowledgeEditor-style
hypernetwork, trained on a dataset's train split, writes that layer's weights per edit.
``kme train kgeditor`` (or a run with no checkpoint) trains it.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_kgeditor.editor import KGEditorEditor

__all__ = ["KGEditorEditor", "PRESETS"]

#: Settings for the shipped fact-world model (measured in docs/global-opt.md).
PRESETS = [
    kme.Preset(name="kgeditor/factworld", editor="kgeditor", model=kme.ModelMatch(alias="factworld"),
               params={"steps": 300, "max_scale": 10.0},
               description="KGEditor trained on the fact world in a few CPU minutes", reference="docs/global-opt.md",
               notes={"steps": "300 steps (minutes on a CPU) instead of the release's 20 epochs on a GPU",
                      "max_scale": "10 instead of 1: with 1 the gate cannot grow the change of the extra layer to "
                                   "what an edit needs within a few hundred steps (held-out edit success 0.30 "
                                   "after 300 steps; 0.83 with 10)"}),
]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(KGEditorEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
