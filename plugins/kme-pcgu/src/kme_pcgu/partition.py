"""Partitioning weights into neurons and ranking them by how differently two gradients move them.

A 2-D weight is cut into vectors, one per unit: with ``input`` aggregation, a partition is
every weight feeding one output unit (a row of an ``nn.Linear`` weight ``[out, in]``, a column of
GPT-2's ``Conv1D`` weight ``[in, out]``); with ``output`` aggregation, every weight leaving one
input unit. A 1-D parameter (bias, norm) is one partition. The released code does the same on
BERT's ``nn.Linear`` weights (it always slices the last dimension, which there is the input).

Partitions are ranked by the cosine similarity of the disadvantaged and advantaged gradients
over the partition; the ``k`` lowest (most different: the weights that decide *which* of the
two completions wins rather than how fluent both are) are the only ones updated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["unit_axes", "similarities", "select_top_k", "count_partitions", "expand"]


def _is_transposed(model: "EditedModel", name: str) -> bool:
    """Whether ``name`` is a ``Conv1D`` weight, stored ``[in, out]``."""
    owner = model.model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model.model
    return type(owner).__name__ == "Conv1D"


def unit_axes(model: "EditedModel", names: list[str], aggregation: str) -> dict[str, int | None]:
    """For each parameter, the dimension a partition's vector runs along (``None``: the whole
    1-D parameter is one partition). Tensors of more than two dimensions are refused."""
    out: dict[str, int | None] = {}
    for n in names:
        dims = model.parameter(n).dim()
        if dims == 1:
            out[n] = None
        elif dims == 2:
            # nn.Linear [out, in]: a unit's incoming weights run along dim 1; Conv1D is transposed
            incoming = 0 if _is_transposed(model, n) else 1
            out[n] = incoming if aggregation == "input" else 1 - incoming
        else:
            raise ValueError(f"parameter {n} has {dims} dimensions; PCGU partitions 1-D and 2-D parameters only")
    return out


def count_partitions(shapes: dict[str, torch.Size], axes: dict[str, int | None]) -> int:
    return sum(1 if axes[n] is None else shapes[n][1 - axes[n]] for n in shapes)  # type: ignore[operator]


def similarities(g_dis: dict[str, torch.Tensor], g_adv: dict[str, torch.Tensor],
                 axes: dict[str, int | None]) -> dict[str, torch.Tensor]:
    """Per parameter, the cosine similarity of the two gradients on each of its partitions (a
    1-element tensor for a 1-D parameter). A partition where either gradient is exactly zero
    gets ``+inf``: it cannot tell the completions apart, so it is ranked last."""
    out = {}
    for n, axis in axes.items():
        a, b = g_dis[n].float(), g_adv[n].float()
        if axis is None:
            a, b, axis = a[None], b[None], 1
        sim = torch.nn.functional.cosine_similarity(a, b, dim=axis)
        dead = (a.abs().amax(dim=axis) == 0) | (b.abs().amax(dim=axis) == 0)
        out[n] = sim.masked_fill(dead, float("inf"))
    return out


def select_top_k(sims: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Boolean masks over each parameter's partitions: the ``k`` lowest similarities over all
    parameters together (ties broken by ``torch.topk``)."""
    names = list(sims)
    flat = torch.cat([sims[n].reshape(-1).cpu() for n in names])
    k = min(k, flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, k, largest=False, sorted=False).indices] = True
    out, start = {}, 0
    for n in names:
        size = sims[n].numel()
        out[n] = chosen[start:start + size].to(sims[n].device)
        start += size
    return out


def expand(mask: torch.Tensor, shape: torch.Size, axis: int | None) -> torch.Tensor:
    """A partition mask broadcast to the parameter's shape."""
    if axis is None:
        return mask.reshape(()).expand(shape)
    return mask.unsqueeze(axis).expand(shape)
