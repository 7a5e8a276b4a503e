"""MEMIT-CSK: MEMIT for commonsense statements (Gupta et al., 2023, "Editing Common Sense in
Transformers"; survey §5.4.3).

The editor is :class:`kme_memit_csk.editor.MEMITCSKEditor`: MEMIT's multi-layer update
(:class:`kme_editlib.editors.MultiLayerEditor`) written at the last token of the subject,
verb or object span (``edit_token``), the spans re-anchored by :mod:`kme_editlib.spans`.
"""

from __future__ import annotations

from kme_editlib.registration import registration_hook

from kme_memit_csk.editor import MEMITCSKEditor
from kme_memit_csk.presets import PRESETS

__all__ = ["kme_register_editors", "kme_register_presets"]

kme_register_editors = registration_hook(MEMITCSKEditor)
kme_register_presets = registration_hook(*PRESETS)
