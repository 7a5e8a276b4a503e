"""PMET's published settings (the authors' released hyperparameter files), as presets."""

from __future__ import annotations

import kme
from kme_editlib.paper_models import GPT2_XL, GPT_J_6B, LLAMA3_8B, WIKIPEDIA_STATS

__all__ = ["PRESETS"]

_PMET = {"fact_token": "subject_last", "v_weight_decay": 0.5, "mom2_adjustment": True,
         "context_template_length_params": [[10, 5]], **WIKIPEDIA_STATS}

PRESETS = [
    kme.Preset(name="pmet/gpt-j-6b", editor="pmet", model=GPT_J_6B,
               params={**_PMET, "layers": [3, 4, 5, 6, 7, 8], "v_num_grad_steps": 30, "v_lr": 0.2,
                       "clamp_norm_factor": 0.75, "kl_factor": 1.0, "mom2_update_weight": 6000.0},
               description="PMET on GPT-J 6B, as published",
               reference="xpq-tech/PMET edit/hparams/PMET/EleutherAI_gpt-j-6B.json",
               notes={"mom2_update_weight": "the authors' file; EasyEdit's copy uses 15,000"}),
    kme.Preset(name="pmet/gpt2-xl", editor="pmet", model=GPT2_XL,
               params={**_PMET, "layers": [13, 14, 15, 16, 17], "v_num_grad_steps": 20, "v_lr": 0.5,
                       "clamp_norm_factor": 2.0, "kl_factor": 0.0625, "mom2_update_weight": 10000.0},
               description="PMET on GPT-2 XL (from the first author's later release)",
               reference="xpq-tech/BLUE hparams/PMET/gpt2-xl.json"),
    kme.Preset(name="pmet/llama3-8b", editor="pmet", model=LLAMA3_8B,
               params={**_PMET, "layers": [4, 5, 6, 7, 8], "v_num_grad_steps": 25, "v_lr": 0.1,
                       "clamp_norm_factor": 0.75, "kl_factor": 0.0625, "mom2_update_weight": 15000.0},
               description="PMET on Llama-3-8B (from the first author's later release)",
               reference="xpq-tech/BLUE hparams/PMET/Llama3-8B.json"),
]
