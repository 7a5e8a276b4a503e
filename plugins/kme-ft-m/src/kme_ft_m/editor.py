"""The FT-M editor: Adam on the teacher-forced NLL of the target tokens only."""

from __future__ import annotations

from pydantic import Field

from kme_ftlib import ConstrainedFineTuneEditor, ConstrainedParams
from kme_ftlib.losses import Objective

__all__ = ["FTMEditor", "FTMParams"]


class FTMParams(ConstrainedParams):
    """EasyEdit's FT-M settings (``hparams/FT/*.yaml`` with ``objective_optimization:
    target_new``): 25 passes of Adam at lr 5e-4, no norm constraint, loss on the target tokens;
    the layer is the GPT-2 XL file's 0."""

    objective: Objective = Field(
        "target_new", description="target_new: teacher-forced NLL of the target tokens only (FT-M); prompt_last: "
                                  "every target token scored at the last prompt token (FT-L's loss)")
    norm_constraint: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="L∞ radius ε around the weights before the edit (null, EasyEdit's FT-M: unconstrained)")


class FTMEditor(ConstrainedFineTuneEditor):
    name = "ft-m"
    description = "fine-tuning of chosen layers with the loss masked to the target tokens (EasyEdit's FT-M)"
    Params = FTMParams
