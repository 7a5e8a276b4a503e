"""ROME: Rank-One Model Editing (Meng et al., 2022, "Locating and Editing Factual
Associations in GPT"; survey §5.4.2, Eq. 26).

The rank-one update itself is :func:`kme_rome.editor.rome_update` (built on
:func:`kme_editlib.solvers.rank_one_update`).
"""

from __future__ import annotations

from typing import Any

import kme

__all__ = ["kme_register_editors", "kme_register_presets"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    from kme_rome.editor import ROMEEditor

    register(ROMEEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    from kme_rome.presets import PRESETS

    for preset in PRESETS:
        register(preset)
