"""AlphaEdit (Fang et al., 2025, "AlphaEdit: Null-Space Constrained Knowledge Editing for
Language Models"): MEMIT's update projected onto the null space of preserved knowledge.

The editor is :class:`kme_alphaedit.editor.AlphaEditEditor`; its update is
:func:`kme_editlib.solvers.null_space_update`.
"""

from __future__ import annotations

from typing import Any

import kme

__all__ = ["kme_register_editors", "kme_register_presets"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    from kme_alphaedit.editor import AlphaEditEditor

    register(AlphaEditEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    from kme_alphaedit.presets import PRESETS

    for preset in PRESETS:
        register(preset)
