"""RecAdam's settings measured on the shipped fact-world model (docs/global-opt.md).

The released γ = 5000 assumes BERT's lr 2e-5; with the decoupled pull a step of lr·γ ≥ 2
diverges, so γ scales with the edit's larger lr. The last block's MLP is the fact-world
layer every fine-tuning editor edits best (see FT-L).
"""

from __future__ import annotations

import kme

__all__ = ["PRESETS"]

PRESETS: list[kme.Preset] = [
    kme.Preset(name="recadam/factworld", editor="recadam", model=kme.ModelMatch(alias="factworld"),
               params={"layers": [3], "lr": 2e-3, "steps": 50, "gamma": 500.0, "k": 0.2},
               description="RecAdam on the fact-world model, tuned", reference="docs/global-opt.md (RecAdam)",
               notes={"gamma": "lr·γ = 1: while λ(t) ≈ 0 each step returns the weights to θ*",
                      "steps": "50 optimiser steps, the anneal's midpoint t0 at 25",
                      "k": "from the released grid {0.05, 0.1, 0.2, 0.5, 1}: 0.5 edits as surely and leaks more, "
                           "0.1 edits less than half the facts (docs/global-opt.md)",
                      "layers": "the last block, as for FT-L and FT-M"}),
]
