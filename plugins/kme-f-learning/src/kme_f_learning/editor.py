"""The F-Learning editor.

With θ the chosen weights before the edit (survey Eq. 21)::

    θ_old = FT(θ, old facts)          fine-tune on "prompt → target_true"
    θ'    = θ − λ·(θ_old − θ)          forget: step away from what strengthens the old facts
    θ*    = FT(θ', new facts)          learn: fine-tune on "prompt → target_new"

The paper fine-tunes the whole model (or LoRA adapters) on each dataset's old and new
knowledge; here both stages train the chosen layers' weights on the edit's requests, with
:mod:`kme_ftlib`'s loop, and the edit writes ``θ* − θ``.

A request without ``target_true`` has no old fact to forget: with ``missing_old: skip`` (the
default) it takes part in the learning stage only, and when no request of the edit has one
the forgetting stage is skipped altogether (plain fine-tuning, recorded in the edit's
decisions as ``forgotten: 0``); ``missing_old: error`` refuses such a request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

import kme
from kme_ftlib import FineTuneEditor, FineTuneParams, adam, describe_fit, fit_requests
from kme_ftlib.losses import Objective

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["FLearningEditor", "FLearningParams", "old_fact"]


class FLearningParams(FineTuneParams):
    """The learning stage is FT-M's fine-tuning (teacher-forced target tokens, ROME's FT
    defaults for weights, lr and steps); ``forget_*`` configure the forgetting stage."""

    objective: Objective = Field(
        "target_new", description="loss of both stages: target_new (teacher-forced target tokens, as the paper's "
                                  "supervised fine-tuning) or prompt_last (every target token at the last prompt "
                                  "token)")
    forget_lambda: float = Field(1.0, ge=0, allow_inf_nan=False,
                                 description="λ: the weights move by −λ·Δ, Δ the change that fine-tuning on the "
                                             "old facts makes (0: no forgetting, plain fine-tuning)")
    forget_lr: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="Adam learning rate of the forgetting stage (null: lr)")
    forget_steps: int | None = Field(None, ge=1, le=100_000,
                                     description="passes of the forgetting stage over the old facts (null: steps); "
                                                 "it never stops early -- the model may already know them well")
    missing_old: Literal["skip", "error"] = Field(
        "skip", description="a request without target_true: skip (learn it without forgetting) or error")


def old_fact(request: "EditRequest") -> str | None:
    """The request's old object, or None when it names none (absent or blank)."""
    t = request.target_true
    return t if t is not None and t.strip() else None


class FLearningEditor(FineTuneEditor):
    name = "f-learning"
    description = "forget the old fact by subtracting its fine-tuning direction, then learn the new one (Ni et al., 2023)"
    Params = FLearningParams

    def train_weights(self, model: "EditedModel", requests: list["EditRequest"], start: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> dict[str, torch.Tensor]:
        p: FLearningParams = self.params  # type: ignore[assignment]
        old = [r for r in requests if old_fact(r) is not None]
        if p.missing_old == "error" and len(old) < len(requests):
            r = next(r for r in requests if old_fact(r) is None)
            raise kme.DatasetRecordError(
                f"request {r.case_id!r} has no target_true: F-Learning has no old fact to forget",
                where="target_true", hint="give the old object, or set the editor's missing_old: skip")
        base = {n: t.to(torch.float32).clone() for n, t in start.items()}
        learn_from = base
        meta["forgotten"] = len(old)
        if old and p.forget_lambda > 0:
            res = fit_requests(model, start, [r.text for r in old], [old_fact(r) or "" for r in old], p,
                               make_optimizer=adam(p.forget_lr or p.lr, p.weight_decay),
                               steps=p.forget_steps or p.steps, early_stop_loss=None)
            learn_from = {n: base[n] - p.forget_lambda * (res.values[n] - base[n]) for n in base}
            meta["forget"] = describe_fit(res)
            meta["forget_max_abs_change"] = max(float((learn_from[n] - base[n]).abs().max()) for n in base)
        res = fit_requests(model, learn_from, [r.text for r in requests], [r.target_new for r in requests], p)
        meta.update(describe_fit(res))
        return res.values
