"""FT-M's settings measured on the shipped fact-world model (docs/global-opt.md).

Why they differ from the code defaults (layer 0, lr 5e-4): layer 0 of the 4-layer fact-world
model holds the subject's facts, and fine-tuning it moves every subject that shares the old
object (locality ~0.5); the last block's MLP takes the edit and leaks far less.
"""

from __future__ import annotations

import kme

__all__ = ["PRESETS"]

PRESETS: list[kme.Preset] = [
    kme.Preset(name="ft-m/factworld", editor="ft-m", model=kme.ModelMatch(alias="factworld"),
               params={"layers": [3], "lr": 2e-3},
               description="FT-M on the fact-world model, tuned", reference="docs/global-opt.md (FT-M)",
               notes={"layers": "the last block: layer 0 edits too but leaks to other subjects (locality ~0.5)",
                      "lr": "5e-4 needs more than 25 passes at layer 3"}),
]
