"""BIRD's settings for the shipped fact-world model, as a preset.

The ROME part is the fact world's tuned ROME (layer 0, 50 steps at lr 1.0, statistics from the
world's own text); the relation phrases name each fact-world relation and its inverse; ``α``
is scaled to this model (see ``ALPHA_NOTE``).
"""

from __future__ import annotations

import kme

__all__ = ["PRESETS", "FACTWORLD_PHRASES"]

FACTWORLD = kme.ModelMatch(alias="factworld")

#: relation -> (phrase, inverse phrase) for the 14 fact-world relations. Only ``capital`` has a
#: unique inverse in the world (each city is the capital of at most one country).
FACTWORLD_PHRASES: dict[str, tuple[str, str]] = {
    "birthplace": ("was born in", "is the birthplace of"),
    "employer": ("works for", "employs"),
    "mother_tongue": ("has the mother tongue", "is the mother tongue of"),
    "instrument": ("plays the", "is played by"),
    "profession": ("works as a", "is the profession of"),
    "sport": ("competes in", "is the sport of"),
    "colour": ("has the favourite colour", "is the favourite colour of"),
    "country": ("is located in", "contains the city"),
    "currency": ("pays with the", "is the currency of"),
    "river": ("lies on the river", "flows through"),
    "dish": ("is famous for its", "is the signature dish of"),
    "capital": ("has the capital", "is the capital of"),
    "official_language": ("has the official language", "is the official language of"),
    "continent": ("is a country in", "is the continent of"),
}

ALPHA_NOTE = ("the largest of 0.0002, 0.01, 0.05 that keeps ROME's efficacy on the 12 capital edits (0.05 drops "
              "argmax accuracy to 0.75); docs/bidirectional.md has the sweep")

PRESETS = [
    kme.Preset(name="bird/factworld", editor="bird", model=FACTWORLD,
               params={"layer": 0, "v_num_grad_steps": 50, "v_lr": 1.0, "clamp_norm_factor": 4.0,
                       "stats_corpus": "factworld", "stats_samples": 2000, "alpha": 0.01,
                       "relation_phrases": {k: list(v) for k, v in FACTWORLD_PHRASES.items()}},
               description="BIRD on the fact-world model: rome/factworld's settings, the world's relation phrases",
               reference="docs/bidirectional.md (fact world measurements)",
               notes={"layer": "as rome/factworld: only layer 0 carries the subject's MLP effect",
                      "alpha": ALPHA_NOTE}),
]
