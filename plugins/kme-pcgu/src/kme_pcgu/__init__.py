"""PCGU: partitioned contrastive gradient unlearning (Yu et al., 2023, "Unlearning Bias in
Language Models by Partitioning Gradients"): for pairs of completions of one prompt, the
advantaged one (``target_true``) and the disadvantaged one (``target_new``), update only the
neurons whose two gradients point most differently, with a step that takes probability from
the advantaged completion. The fine-tuning machinery is :mod:`kme_ftlib`'s.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_pcgu.editor import PCGUEditor
from kme_pcgu.params import PCGUParams
from kme_pcgu.presets import PRESETS

__all__ = ["PCGUEditor", "PCGUParams"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(PCGUEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
