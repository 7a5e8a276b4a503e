"""The RecAdam editor.

Objective (RecAdam Eq. 4 / survey Eq. 20), over the chosen weights θ with θ* their values
before the edit::

    L(t) = λ(t)·L_edit(θ) + (1 − λ(t))·(γ/2)·‖θ − θ*‖²,   λ(t) = 1 / (1 + exp(−k·(t − t0)))

Early steps mostly recall θ*; as λ(t) rises the edit's loss takes over. As in the released
optimiser (``penalty: decoupled``) Adam's step is scaled by ``λ(t)`` and the penalty is a
plain gradient step ``lr·(1 − λ(t))·γ·(θ − θ*)`` outside Adam; ``penalty: loss`` adds the
penalty to the loss and lets Adam normalise the sum (the paper's text read literally).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator

from kme_ftlib import FineTuneEditor, FineTuneParams, RecAdam, describe_fit, fit_requests, quadratic_penalty, schedule
from kme_ftlib.constraints import Anneal
from kme_ftlib.losses import Objective

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["RecAdamEditor", "RecAdamParams"]


class RecAdamParams(FineTuneParams):
    """γ, the anneal function, k and Adam's ε are the released code's defaults
    (``run_glue_with_RecAdam.py``: sigmoid, k 0.5, pretrain_cof 5000, eps 1e-6); the weights,
    loss and steps are FT-M's. ``t0``, the midpoint of the anneal, is counted in the edit's
    optimiser steps: the released 1000 assumes a training run of thousands of steps, so the
    default is half of the edit's steps. The lr, 2e-4, makes lr·γ = 1 with the released γ:
    while λ(t) ≈ 0 each step returns the weights to θ* (lr·γ ≥ 2 diverges)."""

    objective: Objective = Field(
        "target_new", description="the edit's loss: target_new (teacher-forced target tokens, as fine-tuning "
                                  "trains) or prompt_last (every target token at the last prompt token)")
    lr: float = Field(2e-4, gt=0, allow_inf_nan=False, description="Adam learning rate")
    early_stop_loss: float | None = Field(
        None, ge=0, allow_inf_nan=False,
        description="stop once a pass's mean edit loss is below this (null, the default: run every step, as "
                    "RecAdam's training does; the penalty keeps acting until the end)")
    penalty: Literal["decoupled", "loss"] = Field(
        "decoupled", description="decoupled: Adam's step scaled by λ(t) plus a separate pull towards θ* (the "
                                 "released optimiser); loss: the penalty added to the loss, through Adam (the "
                                 "paper's equation read literally)")
    gamma: float = Field(5000.0, gt=0, allow_inf_nan=False,
                         description="γ, the coefficient of the quadratic penalty (the code's pretrain_cof)")
    anneal: Anneal = Field("sigmoid", description="λ(t): sigmoid 1/(1+exp(−k(t−t0))), linear min(1, t/t0), or "
                                                 "constant 1 (no penalty: plain Adam)")
    k: float = Field(0.5, gt=0, allow_inf_nan=False, description="slope of the sigmoid anneal")
    t0: float | None = Field(None, ge=0, allow_inf_nan=False,
                             description="midpoint of the anneal, in optimiser steps of one edit (null: half of "
                                         "the edit's steps)")
    eps: float = Field(1e-6, gt=0, allow_inf_nan=False, description="Adam's ε (the released optimiser's 1e-6)")

    @field_validator("gamma")
    @classmethod
    def _stable_pull(cls, v: float, info: ValidationInfo) -> float:
        lr = info.data.get("lr")
        if info.data.get("penalty", "decoupled") == "decoupled" and lr is not None and lr * v >= 2:
            raise ValueError(
                f"lr × gamma = {lr * v:g}: the decoupled pull θ ← θ − lr·(1−λ)·γ·(θ − θ*) overshoots θ* and "
                f"diverges when lr·γ ≥ 2; lower gamma below {2 / lr:g} or lr below {2 / v:g}")
        return v

    @field_validator("t0")
    @classmethod
    def _linear_needs_t0(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v == 0 and info.data.get("anneal") == "linear":
            raise ValueError("the linear anneal min(1, t/t0) needs t0 > 0")
        return v


class RecAdamEditor(FineTuneEditor):
    name = "recadam"
    description = "fine-tuning with RecAdam's annealed mix of edit loss and distance to the original weights (Chen et al., 2020)"
    Params = RecAdamParams

    def train_weights(self, model: "EditedModel", requests: list["EditRequest"], start: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> dict[str, torch.Tensor]:
        p: RecAdamParams = self.params  # type: ignore[assignment]
        total = p.steps * math.ceil(len(requests) / p.batch_size)
        t0 = p.t0 if p.t0 is not None else total / 2
        lam = schedule(p.anneal, p.k, t0)
        anchors = {n: t.to(torch.float32).clone() for n, t in start.items()}
        names = list(start)
        kwargs: dict[str, Any] = {}
        if p.penalty == "decoupled":
            kwargs["make_optimizer"] = lambda params: RecAdam(
                params, [anchors[n] for n in names], lr=p.lr, gamma=p.gamma, lam=lam, eps=p.eps,
                weight_decay=p.weight_decay)
        else:
            kwargs["make_optimizer"] = lambda params: torch.optim.Adam(params, lr=p.lr, eps=p.eps,
                                                                       weight_decay=p.weight_decay)
            kwargs["total_loss"] = lambda step, task, values: (
                lam(step) * task + (1 - lam(step)) * p.gamma * quadratic_penalty(values, anchors))
        res = fit_requests(model, start, [r.text for r in requests], [r.target_new for r in requests], p, **kwargs)
        dist = math.sqrt(sum(float(((res.values[n] - anchors[n]) ** 2).sum()) for n in names))
        meta.update(describe_fit(res))
        meta.update({"t0": t0, "lambda_first": lam(1), "lambda_last": lam(max(res.steps, 1)),
                     "distance_to_start": dist})
        return res.values
