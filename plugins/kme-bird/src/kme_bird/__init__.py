"""BIRD: Bidirectionally Inversible Relationship moDeling (Ma et al., 2023, "Untying the
Reversal Curse via Bidirectional Language Model Editing"; survey §5.4.3).

ROME's rank-one edit whose target vector is optimised with a further term tying the subject's
and the objects' representations in both directions (:mod:`kme_bird.objective`); the edit
itself is :mod:`kme_bird.editor`.
"""

from __future__ import annotations

from kme_editlib.registration import registration_hook

from kme_bird.editor import BIRDEditor
from kme_bird.presets import PRESETS

__all__ = ["kme_register_editors", "kme_register_presets"]

kme_register_editors = registration_hook(BIRDEditor)
kme_register_presets = registration_hook(*PRESETS)
