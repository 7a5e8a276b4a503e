"""Shared machinery of fine-tuning editors (FT-L, FT-M, RecAdam, F-Learning; survey §5.3).

* :mod:`kme_ftlib.losses` -- the target-token losses: FT-L's ``prompt_last`` (ROME's FT code)
  and FT-M's ``target_new`` (teacher-forced, masked to the target tokens);
* :mod:`kme_ftlib.loop` -- the optimisation loop over chosen weights (float32 copies through
  ``torch.func.functional_call``, the model untouched until the editor writes the result);
* :mod:`kme_ftlib.constraints` -- FT-L's L∞ projection, RecAdam's annealed quadratic penalty
  and its optimiser;
* :mod:`kme_ftlib.params` and :mod:`kme_ftlib.editors` -- the params and editor base classes
  the plugins ``kme-ft-l``, ``kme-ft-m``, ``kme-recadam`` and ``kme-f-learning`` build on.
"""

from kme_ftlib.constraints import RecAdam, anneal_lambda, linf_project, quadratic_penalty, schedule
from kme_ftlib.editors import ConstrainedFineTuneEditor, FineTuneEditor, adam, describe_fit, fit_requests
from kme_ftlib.loop import FitResult, fit, forward_logits, frozen, select_weights
from kme_ftlib.losses import EditBatch, encode_batch, loss_for, prompt_last_nll, target_tokens_nll
from kme_ftlib.params import ConstrainedParams, FineTuneParams

__all__ = [
    "ConstrainedFineTuneEditor", "ConstrainedParams", "EditBatch", "FineTuneEditor", "FineTuneParams", "FitResult",
    "RecAdam", "adam", "anneal_lambda", "describe_fit", "encode_batch", "fit", "fit_requests", "forward_logits",
    "frozen", "linf_project", "loss_for", "prompt_last_nll", "quadratic_penalty", "schedule", "select_weights",
    "target_tokens_nll",
]
