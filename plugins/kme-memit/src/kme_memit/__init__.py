"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al., 2023; survey §5.4.2, Eq. 27).

The editor is :class:`kme_memit.editor.MEMITEditor`; its least-squares update is
:func:`kme_editlib.solvers.mass_update`, spread over layers by
:func:`kme_editlib.multilayer.insert_over_layers`.
"""

from __future__ import annotations

from kme_editlib.registration import registration_hook

from kme_memit.editor import MEMITEditor
from kme_memit.presets import PRESETS

__all__ = ["kme_register_editors", "kme_register_presets"]

kme_register_editors = registration_hook(MEMITEditor)
kme_register_presets = registration_hook(*PRESETS)
