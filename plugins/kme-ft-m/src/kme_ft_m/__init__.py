"""FT-M: fine-tuning with the loss masked to the target tokens, the FT variant of EasyEdit
(``objective_optimization: target_new``) that EasyEdit's survey and WISE report as FT-M. The
shared machinery is in :mod:`kme_ftlib`.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_ft_m.editor import FTMEditor, FTMParams
from kme_ft_m.presets import PRESETS

__all__ = ["FTMEditor", "FTMParams"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(FTMEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
