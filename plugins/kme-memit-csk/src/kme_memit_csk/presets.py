"""MEMIT-CSK's released settings, and the setting measured on the fact-world model.

The released hyperparameter files keep MEMIT's target optimisation and statistics and edit
early layers (1–5); the released run script tunes the window and learning rate per dataset
and model (GPT-2 XL on 20 Questions: object token, layers 1–3, ``v_lr`` 0.0269). The paper
edits GPT-2 models first fine-tuned to judge statements True/False; the presets match any
GPT-2 of that shape.
"""

from __future__ import annotations

import kme
from kme_editlib.paper_models import GPT2_XL, WIKIPEDIA_STATS

__all__ = ["PRESETS", "GPT2_LARGE"]

GPT2_LARGE = kme.ModelMatch(model_type="gpt2", num_layers=36, hidden_size=1280)
"""GPT-2 Large (774 M): 36 layers × 1280."""

_CSK = {"clamp_norm_factor": 0.75, "v_num_grad_steps": 20, "v_weight_decay": 0.5, "kl_factor": 0.0625,
        "mom2_adjustment": True, "mom2_update_weight": 20000.0, **WIKIPEDIA_STATS}
_REPO = "anshitag/memit_csk"

PRESETS = [
    kme.Preset(name="memit-csk/gpt2-xl", editor="memit-csk", model=GPT2_XL,
               params={**_CSK, "edit_token": "object", "layers": [1, 2, 3], "v_lr": 0.02689498084872511},
               description="MEMIT-CSK on GPT-2 XL: the released script's best 20Q setting (object token, layers 1-3)",
               reference=f"{_REPO} script_memit_csk.sh, hparams/MEMIT_CSK/gpt2-xl.json"),
    kme.Preset(name="memit-csk/gpt2-large", editor="memit-csk", model=GPT2_LARGE,
               params={**_CSK, "edit_token": "subject", "layers": [1, 2, 3, 4, 5], "v_lr": 0.5},
               description="MEMIT-CSK on GPT-2 Large, as in the released hyperparameter file",
               reference=f"{_REPO} hparams/MEMIT_CSK/gpt2-large.json"),
    kme.Preset(name="memit-csk/factworld", editor="memit-csk", model=kme.ModelMatch(alias="factworld"),
               params={"edit_token": "subject", "layers": [0], "v_num_grad_steps": 50, "v_lr": 1.0,
                       "clamp_norm_factor": 4.0, "stats_corpus": "factworld", "stats_samples": 2000},
               description="MEMIT-CSK on the fact-world model: memit/factworld's settings at the location "
                           "measured best there (subject token, layer 0, where causal tracing puts the effect)",
               reference="docs/commonsense.md (fact world measurements)"),
]
