"""The multi-layer insertion loop MEMIT introduced and PMET and AlphaEdit reuse (MEMIT Alg. 1).

Given each request's target ``z_i`` at a point of the last critical layer ``L``, the
critical layers are visited from the lowest up. At layer ``l`` the keys ``K`` are read on the
model as the lower layers' updates left it, the remaining residual ``z_i − h_i`` is measured
at the target point, a share of it (MEMIT: ``1/(L−l+1)``; PMET: ``1/√(L−l+1)``) becomes
the residual ``R`` that layer ``l`` writes, and the layer is updated by a method-specific
solver before the next layer is visited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from kme_editlib.hooks import mlp_out_weight, to_storage
from kme_editlib.keys import average_keys, point_values
from kme_editlib.tokens import FactToken

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest

__all__ = ["insert_over_layers", "even_spread", "sqrt_spread"]

Solver = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def even_spread(remaining: int) -> float:
    """MEMIT: the residual is shared evenly by the layers not yet updated."""
    return 1.0 / remaining


def sqrt_spread(remaining: int) -> float:
    """PMET: a larger share (``1/√n``) goes to each lower layer."""
    return remaining ** -0.5


def insert_over_layers(model: "EditedModel", handle: "EditHandle", requests: list["EditRequest"], layers: list[int],
                       point: tuple[int, str], targets: torch.Tensor, key_prefixes: list[str],
                       fact_token: FactToken, solve: Solver,
                       spread: Callable[[int], float] = even_spread,
                       key_groups: list[int] | None = None) -> list[dict]:
    """Update the MLP output projection of each of ``layers`` (ascending) through ``handle``;
    ``solve(layer, K [d_ff, n], R [d, n]) -> Δ [d, d_ff]``; ``key_groups``: how keys are
    averaged over ``key_prefixes`` (see :func:`kme_editlib.keys.average_keys`). Returns
    per-layer diagnostics."""
    info = []
    for i, layer in enumerate(layers):
        t0 = time.perf_counter()
        keys = average_keys(model, requests, [layer], key_prefixes, fact_token, groups=key_groups)[layer]
        current = point_values(model, requests, [point], fact_token)[point]
        resid = (targets.cpu() - current) * spread(len(layers) - i)
        t1 = time.perf_counter()
        delta = solve(layer, keys.T, resid.T)
        name, _, _ = mlp_out_weight(model, layer)
        handle.add_delta(name, to_storage(model, delta.to(torch.float32)))
        info.append({"layer": layer, "residual_norm": float((targets.cpu() - current).norm(dim=-1).mean()),
                     "delta_norm": float(delta.norm()), "keys_seconds": t1 - t0,
                     "solve_seconds": time.perf_counter() - t1})
    return info
