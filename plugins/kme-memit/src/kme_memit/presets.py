"""MEMIT's published settings (the released hyperparameter files), as presets."""

from __future__ import annotations

import kme
from kme_editlib.paper_models import GPT2_XL, GPT_J_6B, LLAMA3_8B, WIKIPEDIA_STATS

__all__ = ["PRESETS"]

_MEMIT = {"fact_token": "subject_last", "v_weight_decay": 0.5, "clamp_norm_factor": 0.75, "kl_factor": 0.0625,
          "mom2_adjustment": True, "context_template_length_params": [[10, 5]], **WIKIPEDIA_STATS}

PRESETS = [
    kme.Preset(name="memit/gpt2-xl", editor="memit", model=GPT2_XL,
               params={**_MEMIT, "layers": [13, 14, 15, 16, 17], "v_num_grad_steps": 20, "v_lr": 0.5,
                       "mom2_update_weight": 20000.0},
               description="MEMIT on GPT-2 XL, as published", reference="kmeng01/memit hparams/MEMIT/gpt2-xl.json"),
    kme.Preset(name="memit/gpt-j-6b", editor="memit", model=GPT_J_6B,
               params={**_MEMIT, "layers": [3, 4, 5, 6, 7, 8], "v_num_grad_steps": 25, "v_lr": 0.5,
                       "mom2_update_weight": 15000.0},
               description="MEMIT on GPT-J 6B, as published",
               reference="kmeng01/memit hparams/MEMIT/EleutherAI_gpt-j-6B.json"),
    kme.Preset(name="memit/llama3-8b", editor="memit", model=LLAMA3_8B,
               params={**_MEMIT, "layers": [4, 5, 6, 7, 8], "v_num_grad_steps": 25, "v_lr": 0.1,
                       "mom2_update_weight": 15000.0},
               description="MEMIT on Llama-3-8B (the MEMIT authors released none; AlphaEdit's baseline settings)",
               reference="jianghoucheng/AlphaEdit hparams/MEMIT/Llama3-8B.json"),
]
