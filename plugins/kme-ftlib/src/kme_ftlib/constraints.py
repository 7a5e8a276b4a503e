"""Keeping fine-tuned weights near where they started.

* :func:`linf_project` -- FT-L's constraint (Zhu et al., 2020; survey Eq. 19): after every
  optimiser step each weight is clamped into ``[θ₀ − ε, θ₀ + ε]``, as ROME's and EasyEdit's
  FT code does.
* :func:`anneal_lambda` and :class:`RecAdam` -- RecAdam (Chen et al., 2020; survey Eq. 20):
  the objective ``λ(t)·L_task + (1 − λ(t))·(γ/2)·‖θ − θ*‖²`` with ``λ(t)`` rising from 0 to 1.
  The released optimiser does not differentiate the penalty through Adam: the task step is
  Adam's, scaled by ``λ(t)``, and the penalty is a separate plain gradient step
  ``θ ← θ − lr·(1 − λ(t))·γ·(θ − θ*)`` (decoupled, like AdamW's weight decay).
  :func:`quadratic_penalty` is the paper's reading, the penalty added to the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import torch

__all__ = ["Anneal", "linf_project", "anneal_lambda", "schedule", "quadratic_penalty", "RecAdam"]

Anneal = Literal["sigmoid", "linear", "constant"]


def linf_project(values: Mapping[str, torch.Tensor], originals: Mapping[str, torch.Tensor],
                 radius: float) -> None:
    """Clamp each tensor of ``values`` in place into the L∞ ball of ``radius`` around its original."""
    with torch.no_grad():
        for name, t in values.items():
            base = originals[name]
            t.copy_(torch.minimum(torch.maximum(t, base - radius), base + radius))


def anneal_lambda(kind: str, step: int, k: float, t0: float) -> float:
    """RecAdam's ``λ(t)`` at optimiser step ``step`` (counted from 1, as the released code does):
    ``sigmoid``: ``1 / (1 + exp(−k·(t − t0)))``; ``linear``: ``min(1, t / t0)``; ``constant``: 1
    (no penalty: plain Adam)."""
    if kind == "sigmoid":
        z = -k * (step - t0)
        if z > 700:  # exp would overflow; λ is 0 to double precision
            return 0.0
        return 1.0 / (1.0 + math.exp(z))
    if kind == "linear":
        return min(1.0, step / t0) if t0 > 0 else 1.0
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown anneal function {kind!r} (sigmoid, linear or constant)")


def schedule(kind: str, k: float, t0: float) -> Callable[[int], float]:
    """``step -> λ(step)`` for :class:`RecAdam` and the penalty-in-the-loss reading."""
    return lambda step: anneal_lambda(kind, step, k, t0)


def quadratic_penalty(values: Mapping[str, torch.Tensor], anchors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``½·Σ‖θ − θ*‖²`` over the trained tensors (multiply by γ and ``1 − λ(t)``)."""
    return sum(((values[n] - anchors[n]) ** 2).sum() for n in values) * 0.5  # type: ignore[return-value]


class RecAdam(torch.optim.Optimizer):
    """Adam whose step is scaled by ``λ(t)`` plus a decoupled pull ``lr·(1 − λ(t))·γ·(θ − θ*)``
    towards the anchors ``θ*`` (RecAdam's released optimiser; Adam's bias correction on,
    ``eps`` 1e-6 as there). Weight decay, when set, is decoupled too."""

    def __init__(self, params: Iterable[torch.Tensor], anchors: Iterable[torch.Tensor], *, lr: float,
                 gamma: float, lam: Callable[[int], float], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0):
        params = list(params)
        anchors = list(anchors)
        if len(params) != len(anchors):
            raise ValueError("RecAdam needs one anchor per parameter")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.anchors = {id(p): a for p, a in zip(params, anchors)}
        self.gamma = gamma
        self.lam = lam
        self.last_lambda = 0.0

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        with torch.no_grad():
            for group in self.param_groups:
                lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    if not st:
                        st["step"] = 0
                        st["m"] = torch.zeros_like(p)
                        st["v"] = torch.zeros_like(p)
                    st["step"] += 1
                    t = st["step"]
                    m, v = st["m"], st["v"]
                    m.mul_(b1).add_(p.grad, alpha=1 - b1)
                    v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    size = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                    lam = self.lam(t)
                    self.last_lambda = lam
                    p.addcdiv_(m, v.sqrt().add_(eps), value=-size * lam)
                    if lam < 1.0:
                        p.add_(p - self.anchors[id(p)], alpha=-lr * (1.0 - lam) * self.gamma)
                    if wd > 0:
                        p.add_(p, alpha=-lr * wd)
        return loss
