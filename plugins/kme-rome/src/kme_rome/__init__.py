"""ROME: Rank-One Model Editing (Meng et al., 2022, "Locating and Editing Factual
Associations in GPT"; survey §5.4.2, Eq. 26).

The rank-one update itself is :func:`kme_rome.editor.rome_update` (built on
:func:`kme_editlib.solvers.rank_one_update`).
"""

from __future__ import annotations

from kme_editlib.registration import registration_hook

from kme_rome.editor import ROMEEditor
from kme_rome.presets import PRESETS

__all__ = ["kme_register_editors", "kme_register_presets"]

kme_register_editors = registration_hook(ROMEEditor)
kme_register_presets = registration_hook(*PRESETS)
