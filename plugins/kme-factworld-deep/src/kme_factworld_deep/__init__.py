"""kme-factworld-deep: the model of the deep fact world, as the model alias ``factworld-deep``.

The world itself (2,052 subjects), its datasets (``factworld-deep``, ...) and corpora live in
kme-factworld, which also trains this model (``kme factworld train --world deep``); this
package only ships the trained checkpoint, so that installing kme-factworld alone stays small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kme

__all__ = ["ALIAS", "CHECKPOINT_DIR", "kme_register_model_aliases", "kme_register_presets"]

ALIAS = "factworld-deep"
CHECKPOINT_DIR = Path(__file__).parent / "checkpoint"
"""The trained model, tokenizer, ``world.json`` and ``training.json`` (``from_pretrained`` loads it)."""


@kme.hookimpl
def kme_register_model_aliases(register: Any) -> None:
    register(kme.ModelAlias(
        name=ALIAS, target=str(CHECKPOINT_DIR),
        description="GPT-2 (8 layers x 192) trained on the deep fact world (2,052 subjects); "
                    "ships with kme-factworld-deep"))


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    from kme_factworld_deep.presets import PRESETS

    for preset in PRESETS:
        register(preset)
