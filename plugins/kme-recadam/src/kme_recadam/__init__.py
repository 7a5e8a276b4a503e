"""RecAdam (Chen et al., 2020, "Recall and Learn: Fine-tuning Deep Pretrained Language Models
with Less Forgetting"; survey §5.3, Eq. 20) as an editor: fine-tune the chosen weights on the
edits while an annealed quadratic penalty pulls them back towards their values before the
edit. The shared machinery is in :mod:`kme_ftlib`.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_recadam.editor import RecAdamEditor, RecAdamParams
from kme_recadam.presets import PRESETS

__all__ = ["RecAdamEditor", "RecAdamParams"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(RecAdamEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
