"""PMET: Precise Model Editing in a Transformer (Li et al., AAAI 2024; survey §5.4.2).

The editor is :class:`kme_pmet.editor.PMETEditor`.
"""

from __future__ import annotations

from typing import Any

import kme

__all__ = ["kme_register_editors", "kme_register_presets"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    from kme_pmet.editor import PMETEditor

    register(PMETEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    from kme_pmet.presets import PRESETS

    for preset in PRESETS:
        register(preset)
