"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al., 2023; survey §5.4.2, Eq. 27).

The editor is :class:`kme_memit.editor.MEMITEditor`; its least-squares update is
:func:`kme_editlib.solvers.mass_update`, spread over layers by
:func:`kme_editlib.multilayer.insert_over_layers`.
"""

from __future__ import annotations

from typing import Any

import kme

__all__ = ["kme_register_editors", "kme_register_presets"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    from kme_memit.editor import MEMITEditor

    register(MEMITEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    from kme_memit.presets import PRESETS

    for preset in PRESETS:
        register(preset)
