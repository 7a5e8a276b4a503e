import pytest
import torch

from kme.errors import EditFailedError
from kme_editlib.solvers import mass_update, null_space_projector, null_space_update, rank_one_update


def _cov(d: int, n: int = 500, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g)
    return K.T @ K / n


def test_rank_one_inserts_the_key_exactly_and_minimally():
    g = torch.Generator().manual_seed(1)
    W, b = torch.randn(6, 10, generator=g), torch.randn(6, generator=g)
    C = _cov(10)
    k, v = torch.randn(10, generator=g), torch.randn(6, generator=g)
    d = rank_one_update(W, C, k, v, b)
    assert torch.allclose((W + d.float()) @ k + b, v, atol=1e-4)
    assert torch.linalg.matrix_rank(d) == 1
    # minimal under C: any other solution W + d + e with e k = 0 costs more in tr(E C Eᵀ)
    e = torch.randn(6, 10, generator=g, dtype=torch.float64)
    e = e - torch.outer(e @ k.double(), k.double()) / k.double().dot(k.double())
    cost = lambda x: torch.trace(x @ C.double() @ x.T)  # noqa: E731
    assert cost(d) < cost(d + 0.1 * e)


def test_rank_one_refuses_a_zero_key():
    with pytest.raises(EditFailedError, match="degenerate"):
        rank_one_update(torch.randn(3, 4), None, torch.zeros(4), torch.ones(3))


def test_mass_update_solves_the_weighted_least_squares():
    g = torch.Generator().manual_seed(2)
    C = _cov(8)
    K, R = torch.randn(8, 5, generator=g), torch.randn(4, 5, generator=g)
    lam = 3.0
    d = mass_update(K, R, C, lam)
    # normal equations of min λ tr(Δ C Δᵀ) + ‖Δ K − R‖²
    lhs = d @ (lam * C.double() + K.double() @ K.double().T)
    assert torch.allclose(lhs, R.double() @ K.double().T, atol=1e-8)
    # with λ → 0 and more keys than edits, the residual is fitted exactly
    d0 = mass_update(K, R, C, 1e-9)
    assert torch.allclose(d0 @ K.double(), R.double(), atol=1e-5)


def test_null_space_update_leaves_preserved_keys_unchanged():
    g = torch.Generator().manual_seed(3)
    basis = torch.randn(10, 4, generator=g)
    K0 = basis @ torch.randn(4, 300, generator=g)          # preserved keys span 4 dimensions
    C = K0 @ K0.T / 300
    P, dim = null_space_projector(C, 1e-6)
    assert dim == 6
    K1 = torch.randn(10, 3, generator=g)
    R = torch.randn(5, 3, generator=g)
    d = null_space_update(K1, R, P, None, l2=1e-6)
    assert torch.allclose(d @ K0.double(), torch.zeros(5, 300, dtype=torch.float64), atol=1e-6)
    # the new keys' components in the null space are still written
    assert torch.allclose(d @ (P @ K1.double()), R.double(), atol=1e-3)
