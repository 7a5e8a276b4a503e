"""The FT-L editor: projected Adam on the edit's loss at the last prompt token."""

from __future__ import annotations

from pydantic import Field

from kme_ftlib import ConstrainedFineTuneEditor, ConstrainedParams
from kme_ftlib.losses import Objective

__all__ = ["FTLEditor", "FTLParams"]


class FTLParams(ConstrainedParams):
    """ROME's FT baseline for GPT-2 XL (``hparams/FT/gpt2-xl_constr.json``; EasyEdit's
    ``hparams/FT/gpt2-xl.yaml`` is the same): layer 0's ``c_proj``, 25 passes at lr 5e-4,
    ε = 5e-4, loss at the last prompt token."""

    objective: Objective = Field(
        "prompt_last", description="prompt_last: every target token scored at the last prompt token (ROME's and "
                                   "EasyEdit's FT-L); target_new: teacher-forced target tokens (FT-M's loss)")


class FTLEditor(ConstrainedFineTuneEditor):
    name = "ft-l"
    description = "fine-tuning of chosen layers inside an L-infinity ball around the original weights (Zhu et al., 2020)"
    Params = FTLParams
