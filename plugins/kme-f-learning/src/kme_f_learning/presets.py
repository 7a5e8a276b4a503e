"""F-Learning's settings measured on the shipped fact-world model (docs/global-opt.md).

The learning stage uses FT-M's fact-world settings (the last block's MLP, lr 2e-3); the
forgetting stage fine-tunes the same weights on the old facts with the same lr and steps and
subtracts the change once (λ = 1).
"""

from __future__ import annotations

import kme

__all__ = ["PRESETS"]

PRESETS: list[kme.Preset] = [
    kme.Preset(name="f-learning/factworld", editor="f-learning", model=kme.ModelMatch(alias="factworld"),
               params={"layers": [3], "lr": 2e-3, "forget_lambda": 1.0},
               description="F-Learning on the fact-world model, tuned", reference="docs/global-opt.md (F-Learning)",
               notes={"layers": "the last block, as for FT-M", "forget_lambda": "larger λ costs locality here"}),
]
