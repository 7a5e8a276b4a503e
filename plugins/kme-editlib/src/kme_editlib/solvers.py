"""Closed-form weight updates of the linear associative memory ``v = W k`` (W as [out, in]).

- :func:`rank_one_update` -- ROME (survey Eq. 26; ROME Eq. 2): insert ``(k*, v*)`` with the
  least change to the other keys, measured by ``C = E[k kᵀ]``:
  ``Ŵ = W + Λ (C⁻¹ k*)ᵀ``, ``Λ = (v* − W k*) / ((C⁻¹ k*)ᵀ k*)``.
- :func:`mass_update` -- MEMIT (survey Eq. 27; MEMIT Eq. 14): ``Δ = R Kᵀ (λ C + K Kᵀ)⁻¹`` for
  new keys ``K`` [in, n] and residuals ``R`` [out, n], ``λ`` the weight of preserved keys.
- :func:`null_space_projector` / :func:`null_space_update` -- AlphaEdit: project the update
  onto the null space of the preserved keys' second moment so that ``Δ k₀ = 0`` for them.

Solves run in float64; callers cast back to the weight's dtype. Given a cached
factorisation of ``C`` (:func:`kme_editlib.factors.cov_factor`), ROME's ``C⁻¹k*`` is two
triangular solves and MEMIT's update an ``n × n`` system by the Woodbury identity
``(λC + K Kᵀ)⁻¹ K = U (I + Kᵀ U)⁻¹``, ``U = (λC)⁻¹ K``; without one they solve against
``C`` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kme import EditFailedError

if TYPE_CHECKING:  # pragma: no cover
    from kme_editlib.factors import Factor

__all__ = ["rank_one_update", "mass_update", "null_space_projector", "null_space_update"]


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64)


def rank_one_update(weight: torch.Tensor, cov: torch.Tensor | None, key: torch.Tensor, value: torch.Tensor,
                    bias: torch.Tensor | None = None, direction: torch.Tensor | None = None,
                  factor: "Factor | None" = None) -> torch.Tensor:
    """``Δ`` [out, in] such that ``(W + Δ) k + b = v*``, minimal under ``C`` (identity if
    ``cov`` is None). ``direction`` (default ``key``) is the key whose ``C⁻¹k`` spans the
    update's row space: ROME's released code inserts at the bare prompt's key along the
    direction of the prefix-averaged key. ``factor``: a factorisation of ``cov`` to solve with."""
    W, k, v = _f64(weight), _f64(key), _f64(value)
    kd = k if direction is None else _f64(direction)
    if cov is None:
        u = kd
    elif factor is not None:
        u = factor.solve(kd)
    else:
        u = torch.linalg.solve(_f64(cov), kd)
    denom = torch.dot(u, k)
    if not torch.isfinite(denom) or abs(float(denom)) < 1e-12:
        raise EditFailedError("rank-one update is degenerate: (C⁻¹k*)ᵀk* is zero or not finite",
                              hint="the key is (near) zero at this layer; pick another layer")
    current = W @ k + (0 if bias is None else _f64(bias))
    lam = (v - current) / denom
    return torch.outer(lam, u)


def mass_update(keys: torch.Tensor, resid: torch.Tensor, cov: torch.Tensor | None, lam: float,
                factor: "Factor | None" = None) -> torch.Tensor:
    """``Δ = R Kᵀ (λ C + K Kᵀ)⁻¹`` [out, in]; ``keys`` [in, n], ``resid`` [out, n].

    With a positive-definite ``factor`` of ``cov`` (or ``cov`` None, C = I) it is
    ``Δ = R S⁻¹ Uᵀ``, ``U = (λC)⁻¹ K``, ``S = I + Kᵀ U`` (Woodbury): an ``n × n`` solve."""
    K, R = _f64(keys), _f64(resid)
    if cov is None or (factor is not None and factor.positive_definite):
        U = (K if cov is None else factor.solve(K)) / lam  # type: ignore[union-attr]
        S = K.T @ U
        S = (S + S.T) / 2 + torch.eye(S.shape[0], dtype=torch.float64, device=S.device)
        return R @ torch.linalg.solve(S, U.T)  # S is symmetric
    C = torch.eye(K.shape[0], dtype=torch.float64, device=K.device) if cov is None else _f64(cov)
    A = lam * C + K @ K.T
    return torch.linalg.solve(A, K @ R.T).T  # A is symmetric


def null_space_projector(cov: torch.Tensor, threshold: float, *, relative: bool = False) -> tuple[torch.Tensor, int]:
    """``P = Û Ûᵀ`` over the eigenvectors of ``C`` whose eigenvalues are below ``threshold``
    (relative to the largest eigenvalue when ``relative``); and the null space's dimension."""
    C = _f64(cov)
    evals, evecs = torch.linalg.eigh((C + C.T) / 2)
    cut = threshold * float(evals.max()) if relative else threshold
    small = evals < cut
    U = evecs[:, small]
    return U @ U.T, int(small.sum())


def null_space_update(keys: torch.Tensor, resid: torch.Tensor, projector: torch.Tensor,
                      previous_gram: torch.Tensor | None, l2: float) -> torch.Tensor:
    """AlphaEdit's ``Δ = R Kᵀ P (K_p K_pᵀ P + K Kᵀ P + α I)⁻¹`` [out, in]; ``previous_gram``
    is ``K_p K_pᵀ`` of keys edited earlier in a sequence (kept unchanged by this update)."""
    K, R, P = _f64(keys), _f64(resid), _f64(projector)
    G = K @ K.T
    if previous_gram is not None:
        G = G + _f64(previous_gram)
    eye = torch.eye(K.shape[0], dtype=torch.float64, device=K.device)
    # Δᵀ = (P G + α I)⁻¹ P K Rᵀ, whose columns lie in P's range (so Δ k₀ = 0 for preserved keys)
    return torch.linalg.solve(P @ G + l2 * eye, P @ K @ R.T).T
