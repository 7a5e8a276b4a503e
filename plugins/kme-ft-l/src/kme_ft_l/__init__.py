"""FT-L: constrained fine-tuning (Zhu et al., 2020, "Modifying Memories in Transformer
Models"; survey §5.3, Eq. 19), as ROME's and EasyEdit's FT baseline runs it: Adam on the
chosen layers' MLP output projection, every weight clamped after each step into an L∞ ball
around its value before the edit. The shared machinery is in :mod:`kme_ftlib`.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_ft_l.editor import FTLEditor, FTLParams
from kme_ft_l.presets import PRESETS

__all__ = ["FTLEditor", "FTLParams"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(FTLEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
