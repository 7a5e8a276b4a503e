"""ROME's published settings (the released hyperparameter files), as presets."""

from __future__ import annotations

import kme
from kme_editlib.paper_models import GPT2_XL, GPT_J_6B, LLAMA3_8B, WIKIPEDIA_STATS

__all__ = ["PRESETS"]

_ROME = {"fact_token": "subject_last", "v_weight_decay": 0.5, "clamp_norm_factor": 4.0, "kl_factor": 0.0625,
         "context_template_length_params": [[5, 10], [10, 10]], **WIKIPEDIA_STATS}

PRESETS = [
    kme.Preset(name="rome/gpt2-xl", editor="rome", model=GPT2_XL,
               params={**_ROME, "layer": 17, "v_num_grad_steps": 20, "v_lr": 0.5, "mom2_adjustment": True},
               description="ROME on GPT-2 XL, as published", reference="kmeng01/rome hparams/ROME/gpt2-xl.json"),
    kme.Preset(name="rome/gpt-j-6b", editor="rome", model=GPT_J_6B,
               params={**_ROME, "layer": 5, "v_num_grad_steps": 20, "v_lr": 0.5, "mom2_adjustment": True},
               description="ROME on GPT-J 6B, as published",
               reference="kmeng01/rome hparams/ROME/EleutherAI_gpt-j-6B.json"),
    kme.Preset(name="rome/llama3-8b", editor="rome", model=LLAMA3_8B,
               params={**_ROME, "layer": 5, "v_num_grad_steps": 25, "v_lr": 0.5, "v_weight_decay": 0.001,
                       "mom2_adjustment": False},
               description="ROME on Llama-3-8B (the authors released none; the widely used settings)",
               reference="zjunlp/EasyEdit hparams/ROME/llama3-8b.yaml (= jianghoucheng/AlphaEdit "
                         "hparams/ROME/Llama3-8B.json)",
               notes={"mom2_adjustment": "those releases run ROME on Llama-3 without C (identity)"}),
]
