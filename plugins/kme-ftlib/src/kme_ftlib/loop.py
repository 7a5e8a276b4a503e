"""The optimisation loop shared by the fine-tuning editors.

The chosen weights are trained as float32 copies substituted into the network with
``torch.func.functional_call``: the model's own parameters are never written during the loop
(every other parameter is frozen for its duration, so no gradient is computed or left on
them), and an editor writes the result once through ``handle.set_param`` -- which makes undo
bit-exact and patches automatic.

The loop follows ROME's / EasyEdit's FT code: ``steps`` passes over the requests in chunks of
``batch_size``, one optimiser step per chunk; a chunk whose loss is already below
``early_stop_loss`` takes no step, and the loop stops after a pass whose mean loss is below
it; a projection (FT-L's L∞ clamp) runs after every chunk.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

import kme

from kme_ftlib.losses import EditBatch

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["FitResult", "select_weights", "frozen", "forward_logits", "fit", "TotalLoss"]

#: ``(step, task_loss, values) -> loss to minimise``: adds a penalty to the task loss (RecAdam's
#: paper reading); ``step`` counts optimiser steps from 1.
TotalLoss = Callable[[int, torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]

_PART_OF_BLOCK = "block"


@dataclass
class FitResult:
    """What :func:`fit` ends with: the trained tensors (float32) and how it got there."""

    values: dict[str, torch.Tensor]
    losses: list[float] = field(default_factory=list)  # mean task loss of each pass
    steps: int = 0  # optimiser steps taken
    stopped_early: bool = False

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


def select_weights(model: "EditedModel", layers: Sequence[int], parts: Sequence[str],
                   include_bias: bool) -> list[str]:
    """Names of the parameters to fine-tune: for each layer, the weight of each part (``block``:
    every parameter of the block), and the part's bias when ``include_bias`` and it has one --
    ROME's FT code selects parameters by the module's name, so GPT-2's ``c_proj`` bias trains
    with its weight."""
    params = dict(model.model.named_parameters())
    names: list[str] = []
    for layer in layers:
        layer = model.check_layer(layer)
        for part in parts:
            if part == _PART_OF_BLOCK:
                prefix = f"{model.layout.blocks}.{layer}."
                found = [n for n in params if n.startswith(prefix) and (include_bias or not n.endswith(".bias"))]
            else:
                if getattr(model.layout, part, None) is None:
                    raise kme.ConfigError(f"the {model.layout.model_type} layout has no {part!r} module",
                                          where="parts", hint="choose parts the architecture has, e.g. mlp_out")
                weight = model.weight_name(layer, part)  # type: ignore[arg-type]
                found = [weight]
                bias = weight[: -len("weight")] + "bias"
                if include_bias and bias in params:
                    found.append(bias)
            names.extend(n for n in found if n not in names)
    if not names:
        raise kme.ConfigError("no parameter matches layers and parts", where="parts")
    return names


@contextlib.contextmanager
def frozen(model: "EditedModel") -> Iterator[None]:
    """Every parameter of the network without gradients, and the network in eval mode, for the
    duration; flags and mode are restored afterwards."""
    flags = {n: p.requires_grad for n, p in model.model.named_parameters()}
    was_training = model.model.training
    try:
        for p in model.model.parameters():
            p.requires_grad_(False)
        model.model.eval()
        yield
    finally:
        for n, p in model.model.named_parameters():
            p.requires_grad_(flags[n])
        model.model.train(was_training)


def forward_logits(model: "EditedModel", values: dict[str, torch.Tensor], batch: EditBatch) -> torch.Tensor:
    """The network's logits on ``batch`` with ``values`` in place of those parameters."""
    dtypes = {n: model.parameter(n).dtype for n in values}
    override = {n: t if t.dtype == dtypes[n] else t.to(dtypes[n]) for n, t in values.items()}
    out = torch.func.functional_call(model.model, override, (batch.ids,), {"attention_mask": batch.mask})
    return out.logits


def fit(model: "EditedModel", start: dict[str, torch.Tensor], batch: EditBatch,
        loss_fn: Callable[[torch.Tensor, EditBatch], torch.Tensor], *, steps: int, batch_size: int,
        make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
        early_stop_loss: float | None = None,
        project: Callable[[dict[str, torch.Tensor]], None] | None = None,
        total_loss: TotalLoss | None = None) -> FitResult:
    """Minimise ``loss_fn`` over ``batch`` with respect to the tensors ``start`` (name ->
    initial value, on the parameter's device); returns the final float32 values.

    ``make_optimizer`` builds the optimiser over the trainable tensors (Adam for FT,
    :class:`kme_ftlib.constraints.RecAdam`); ``project`` runs after every chunk;
    ``total_loss`` turns the task loss into the loss that is minimised."""
    values = {n: t.detach().to(torch.float32).clone().requires_grad_(True) for n, t in start.items()}
    opt = make_optimizer(list(values.values()))
    result = FitResult(values)
    n = len(batch)
    chunks = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    subs = [batch if len(c) == n else batch.rows(c) for c in chunks]
    with frozen(model):
        for _ in range(steps):
            seen, total = 0, 0.0
            for sub in subs:
                opt.zero_grad(set_to_none=True)
                task = loss_fn(forward_logits(model, values, sub), sub)
                value = float(task.detach())
                if not math.isfinite(value):
                    raise kme.EditFailedError(f"the fine-tuning loss became {value} after {result.steps} steps",
                                              hint="lower the learning rate")
                total += value * len(sub)
                seen += len(sub)
                if early_stop_loss is None or value >= early_stop_loss:
                    loss = task if total_loss is None else total_loss(result.steps + 1, task, values)
                    loss.backward()
                    opt.step()
                    result.steps += 1
                if project is not None:
                    project(values)
            result.losses.append(total / seen)
            if early_stop_loss is not None and result.losses[-1] < early_stop_loss:
                result.stopped_early = True
                break
    result.values = {k: v.detach() for k, v in values.items()}
    return result
