"""AlphaEdit (Fang et al., 2025, "AlphaEdit: Null-Space Constrained Knowledge Editing for
Language Models"): MEMIT's update projected onto the null space of preserved knowledge.

The editor is :class:`kme_alphaedit.editor.AlphaEditEditor`; its update is
:func:`kme_editlib.solvers.null_space_update`.
"""

from __future__ import annotations

from kme_editlib.registration import registration_hook

from kme_alphaedit.editor import AlphaEditEditor
from kme_alphaedit.presets import PRESETS

__all__ = ["kme_register_editors", "kme_register_presets"]

kme_register_editors = registration_hook(AlphaEditEditor)
kme_register_presets = registration_hook(*PRESETS)
