"""PMET: Precise Model Editing in a Transformer (Li et al., AAAI 2024; survey §5.4.2).

The editor is :class:`kme_pmet.editor.PMETEditor`.
"""

from __future__ import annotations

from kme_editlib.registration import registration_hook

from kme_pmet.editor import PMETEditor
from kme_pmet.presets import PRESETS

__all__ = ["kme_register_editors", "kme_register_presets"]

kme_register_editors = registration_hook(PMETEditor)
kme_register_presets = registration_hook(*PRESETS)
