"""MEND's editor networks (Mitchell et al., 2022a, section 3 and Eq. 3-4).

For each edited weight ``W_ℓ`` the fine-tuning gradient is ``Σ_t δ_t u_tᵀ`` (token inputs
``u_t``, output gradients ``δ_t``). MEND maps each pair ``(u_t, δ_t)`` through a small
network ``g`` to ``(ũ_t, δ̃_t)`` and changes the weight by ``α_ℓ Σ_t ũ_t δ̃_tᵀ`` with a
learned per-weight step ``α_ℓ``. As in the released code:

* ``u`` and ``δ`` are standardised with running means and variances collected during
  training (Welford's update) and frozen afterwards;
* ``g`` is an "identity-initialised" MLP (``IDMLP``): ``n_hidden + 1`` low-rank layers of the
  input's width, each ``z ↦ z + relu(s_m ⊙ (U V z + b) + o_m)`` with ``U`` zero at init (so
  ``g`` starts as the identity) and a scale ``s_m`` / offset ``o_m`` per *mode*;
* ``combine``: ``u`` and ``δ`` are concatenated and transformed together (the paper's
  ``z_ℓ = concat(u_ℓ, δ_ℓ₊₁)``);
* ``shared``: weights of the same shape share one network and are told apart by their mode
  (their index among the weights of that shape), the per-layer scale and offset.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["LowRankResidual", "IdentityMLP", "GradientTransform", "MendNetworks"]


class LowRankResidual(nn.Module):
    """``z + relu((U V z + b) ⊙ s_m + o_m)``, ``U: [d, r]`` zero-initialised, ``V: [r, d]``
    standard normal (the released ``LRLinear`` with ``init="id"``). The released code clamps
    at zero after every layer, the last one included; so does this."""

    def __init__(self, dim: int, rank: int, n_modes: int):
        super().__init__()
        mid = min(rank, dim)
        self.u = nn.Parameter(torch.zeros(dim, mid))
        self.v = nn.Parameter(torch.randn(mid, dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mode_scale = nn.Parameter(torch.ones(n_modes, dim))
        self.mode_shift = nn.Parameter(torch.zeros(n_modes, dim))

    def forward(self, z: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (z @ self.v.T) @ self.u.T + self.bias
        pre = pre * self.mode_scale[mode] + self.mode_shift[mode]
        return z + pre.clamp(min=0)


class IdentityMLP(nn.Module):
    """``n_hidden + 1`` :class:`LowRankResidual` layers: the identity at initialisation."""

    def __init__(self, dim: int, rank: int, n_hidden: int, n_modes: int):
        super().__init__()
        self.layers = nn.ModuleList([LowRankResidual(dim, rank, n_modes) for _ in range(n_hidden + 1)])

    def forward(self, z: torch.Tensor, mode: int) -> torch.Tensor:
        for layer in self.layers:
            z = layer(z, mode)
        return z


class GradientTransform(nn.Module):
    """Standardise ``(u, δ)`` with running statistics and transform them with an
    :class:`IdentityMLP` (one over the concatenation when ``combine``, else one each)."""

    def __init__(self, d_in: int, d_out: int, *, rank: int, n_hidden: int, n_modes: int, combine: bool = True,
                 norm: bool = True):
        super().__init__()
        self.d_in, self.d_out, self.combine, self.norm = d_in, d_out, combine, norm
        self.register_buffer("u_mean", torch.zeros(d_in))
        self.register_buffer("u_m2", torch.zeros(d_in))
        self.register_buffer("d_mean", torch.zeros(d_out))
        self.register_buffer("d_m2", torch.zeros(d_out))
        self.register_buffer("count", torch.zeros(()))
        if combine:
            self.mlp = IdentityMLP(d_in + d_out, rank, n_hidden, n_modes)
        else:
            self.mlp_u = IdentityMLP(d_in, rank, n_hidden, n_modes)
            self.mlp_d = IdentityMLP(d_out, rank, n_hidden, n_modes)

    @torch.no_grad()
    def _update_stats(self, u: torch.Tensor, d: torch.Tensor) -> None:
        """Merge a batch of rows into the running mean / sum of squared deviations (Chan et
        al.'s parallel form of Welford's update: the same numbers as one row at a time)."""
        n_b = u.shape[0]
        if n_b == 0:
            return
        n_a = float(self.count)
        n = n_a + n_b
        for x, mean, m2 in ((u, self.u_mean, self.u_m2), (d, self.d_mean, self.d_m2)):
            mb = x.mean(0)
            m2b = ((x - mb) ** 2).sum(0)
            diff = mb - mean
            mean.add_(diff * (n_b / n))
            m2.add_(m2b + diff ** 2 * (n_a * n_b / n))
        self.count.fill_(n)

    def _std(self, m2: torch.Tensor) -> torch.Tensor:
        return (m2 / (self.count - 1).clamp_min(1)).sqrt()

    def forward(self, u: torch.Tensor, d: torch.Tensor, mode: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        u, d = u.float(), d.float()
        if self.training:
            self._update_stats(u, d)
        if self.norm:
            if float(self.count) < 2:
                raise RuntimeError("MEND's input statistics need at least 2 tokens; the networks are untrained")
            u = (u - self.u_mean) / (self._std(self.u_m2) + 1e-7)
            d = (d - self.d_mean) / (self._std(self.d_m2) + 1e-7)
        if self.combine:
            out = self.mlp(torch.cat([u, d], -1), mode)
            return out[:, : self.d_in], out[:, self.d_in:]
        return self.mlp_u(u, mode), self.mlp_d(d, mode)


class MendNetworks(nn.Module):
    """MEND's trained parts for a list of edited weights: the transforms (one per weight, or
    one per weight shape when ``shared``) and the learned steps ``edit_lrs`` (one per weight).

    ``targets`` are dicts with ``name``, ``d_in``, ``d_out`` (what :meth:`config` records and
    :meth:`from_config` reads back)."""

    def __init__(self, targets: list[dict[str, Any]], *, rank: int = 1920, n_hidden: int = 1, combine: bool = True,
                 norm: bool = True, shared: bool = True, edit_lr: float = 1e-4):
        super().__init__()
        self.targets = [dict(t) for t in targets]
        self.settings = {"rank": rank, "n_hidden": n_hidden, "combine": combine, "norm": norm, "shared": shared}
        self.keys: list[str] = []
        self.modes: list[int] = []
        seen: dict[str, int] = {}
        for i, t in enumerate(self.targets):
            key = f"{t['d_in']}x{t['d_out']}" if shared else str(i)
            self.modes.append(seen.get(key, 0))
            seen[key] = seen.get(key, 0) + 1
            self.keys.append(key)
        first = {k: self.targets[self.keys.index(k)] for k in seen}
        self.transforms = nn.ModuleDict({
            k: GradientTransform(t["d_in"], t["d_out"], rank=rank, n_hidden=n_hidden, n_modes=seen[k],
                                 combine=combine, norm=norm)
            for k, t in first.items()})
        self.edit_lrs = nn.Parameter(torch.full((len(self.targets),), float(edit_lr)))

    def transform(self, i: int, u: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ũ, δ̃)`` for the rows of target ``i``."""
        return self.transforms[self.keys[i]](u, d, self.modes[i])

    def network_parameters(self) -> list[nn.Parameter]:
        """Everything but ``edit_lrs`` (MEND trains those with their own learning rate)."""
        return list(self.transforms.parameters())

    def config(self) -> dict[str, Any]:
        return {"targets": self.targets, **self.settings}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MendNetworks":
        return cls(config["targets"], **{k: config[k] for k in ("rank", "n_hidden", "combine", "norm", "shared")})
