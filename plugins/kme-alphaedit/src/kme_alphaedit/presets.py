"""AlphaEdit's published settings (the authors' released hyperparameter files), as presets."""

from __future__ import annotations

import kme
from kme_editlib.paper_models import GPT2_XL, GPT_J_6B, LLAMA3_8B, WIKIPEDIA_STATS

__all__ = ["PRESETS"]

_ALPHA = {"fact_token": "subject_last", "v_weight_decay": 0.5, "clamp_norm_factor": 0.75, "kl_factor": 0.0625,
          "mom2_adjustment": True, "context_template_length_params": [[10, 5]], "nullspace_threshold": 0.02,
          "L2": 10.0, **WIKIPEDIA_STATS}

PRESETS = [
    kme.Preset(name="alphaedit/gpt2-xl", editor="alphaedit", model=GPT2_XL,
               params={**_ALPHA, "layers": [13, 14, 15, 16, 17], "v_num_grad_steps": 20, "v_lr": 0.5,
                       "mom2_update_weight": 20000.0},
               description="AlphaEdit on GPT-2 XL, as published",
               reference="jianghoucheng/AlphaEdit hparams/AlphaEdit/gpt2-xl.json"),
    kme.Preset(name="alphaedit/gpt-j-6b", editor="alphaedit", model=GPT_J_6B,
               params={**_ALPHA, "layers": [3, 4, 5, 6, 7, 8], "v_num_grad_steps": 25, "v_lr": 0.5,
                       "mom2_update_weight": 15000.0},
               description="AlphaEdit on GPT-J 6B, as published",
               reference="jianghoucheng/AlphaEdit hparams/AlphaEdit/EleutherAI_gpt-j-6B.json"),
    kme.Preset(name="alphaedit/llama3-8b", editor="alphaedit", model=LLAMA3_8B,
               params={**_ALPHA, "layers": [4, 5, 6, 7, 8], "v_num_grad_steps": 25, "v_lr": 0.1,
                       "mom2_update_weight": 15000.0},
               description="AlphaEdit on Llama-3-8B, as published",
               reference="jianghoucheng/AlphaEdit hparams/AlphaEdit/Llama3-8B.json",
               notes={"L2": "the authors' file; EasyEdit's copy uses 1"}),
]
