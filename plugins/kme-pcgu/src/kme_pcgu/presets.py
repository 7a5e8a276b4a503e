"""PCGU's settings measured on the shipped fact-world model (docs/debias.md).

Why they differ from the released code's (lr 1e-5, k 10,000, 16 pairs per step, 5 passes):
lr 1e-5 moves nothing on a 4-layer × 128 model, and k 10,000 is more than its 4,640
partitions (the full gradient, which equalises the pairs but forgets every other fact). Pairs
of one group point opposite ways (a journalist's pair asks for "judge", a judge's for
"journalist"), so a chunk of several sums gradients that cancel: one pair per step, each
stopped once at parity, moves them all; lowering the advantaged and raising the disadvantaged
completion together gets closest to parity.
"""

from __future__ import annotations

import kme

__all__ = ["PRESETS"]

PRESETS: list[kme.Preset] = [
    kme.Preset(name="pcgu/factworld", editor="pcgu", model=kme.ModelMatch(alias="factworld"),
               params={"k": 200, "lr": 5e-3, "steps": 20, "batch_size": 1, "stop_gap": 0.0, "direction": "both"},
               description="PCGU on the fact-world model, tuned", reference="docs/debias.md",
               notes={"k": "about 4% of the model's 4,640 partitions (the paper: 10,000 of BERT-base's ~115,000); "
                           "k 400 equalises more and keeps less, k = all forgets every other fact",
                      "lr": "1e-5 (the released code's) moves nothing on this model",
                      "batch_size": "one pair per step: pairs of one group ask for opposite moves and cancel",
                      "stop_gap": "stop each pair at parity (the goal is equal, not flipped)",
                      "direction": "both: |gap| 0.93 against 1.76 (advantaged, the released default) and 1.64 "
                                   "(disadvantaged), other facts kept"}),
]
