"""F-Learning (Ni et al., 2023, "Forgetting before Learning: Utilizing Parametric Arithmetic for
Knowledge Updating in Large Language Models"; survey §5.3, Eq. 21) as an editor: fine-tune on
the old facts to find the direction Δ that strengthens them, subtract λ·Δ from the weights,
then fine-tune on the new facts. The shared machinery is in :mod:`kme_ftlib`.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_f_learning.editor import FLearningEditor, FLearningParams
from kme_f_learning.presets import PRESETS

__all__ = ["FLearningEditor", "FLearningParams"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(FLearningEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
