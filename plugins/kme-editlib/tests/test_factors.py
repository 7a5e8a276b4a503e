import pytest
import torch

from kme.testing import tiny_model
from kme_editlib import factors as F
from kme_editlib import stats as S
from kme_editlib.solvers import mass_update, null_space_projector, rank_one_update


def _spd(d: int, seed: int = 0, n: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(n or 3 * d, d, generator=g, dtype=torch.float64) * torch.linspace(0.05, 3, d, dtype=torch.float64)
    return (K.T @ K / K.shape[0]).float()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(autouse=True)
def _fresh_memory():
    F.clear_memory()
    yield
    F.clear_memory()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cached_factor_solves_match_the_direct_solves(seed):
    d, n = 96, 7
    C = _spd(d, seed)
    g = torch.Generator().manual_seed(100 + seed)
    W, b = torch.randn(12, d, generator=g), torch.randn(12, generator=g)
    k, kd, v = torch.randn(d, generator=g), torch.randn(d, generator=g), torch.randn(12, generator=g)
    f = F.cov_factor(C)
    assert f.method == "cholesky" and f.source == "computed"
    old = rank_one_update(W, C, k, v, b, direction=kd)
    new = rank_one_update(W, C, k, v, b, direction=kd, factor=f)
    assert _rel(new, old) < 1e-8
    K, R = torch.randn(d, n, generator=g), torch.randn(12, n, generator=g)
    for lam in (0.1, 468.75, 15000.0):
        old = mass_update(K, R, C, lam)
        new = mass_update(K, R, C, lam, factor=f)
        assert _rel(new, old) < 1e-8, lam
    # C = I (no statistics): the Woodbury form against the direct solve
    eye = torch.eye(d)
    assert _rel(mass_update(K, R, None, 3.0), mass_update(K, R, eye, 3.0)) < 1e-8


def test_a_singular_covariance_falls_back_to_lu_and_a_direct_mass_solve():
    d = 40
    C = _spd(d, n=10)  # rank 10 < 40
    C[0, 0] = -1.0  # not positive definite whatever the rounding
    f = F.cov_factor(C)
    assert f.method == "lu" and not f.positive_definite
    g = torch.Generator().manual_seed(5)
    W, k, v = torch.randn(3, d, generator=g), torch.randn(d, generator=g), torch.randn(3, generator=g)
    assert torch.allclose(rank_one_update(W, C, k, v, factor=f), rank_one_update(W, C, k, v))
    K, R = torch.randn(d, 4, generator=g), torch.randn(3, 4, generator=g)
    assert torch.equal(mass_update(K, R, C, 2.0, factor=f), mass_update(K, R, C, 2.0))


def test_the_second_use_does_not_factorise_again_and_the_memory_is_bounded(monkeypatch):
    C = _spd(32)
    before = F.FACTORISATIONS["cholesky"]
    info: dict = {}
    F.cov_factor(C, info=info)
    assert info["factor"] == "computed" and info["factor_seconds"] >= 0
    F.cov_factor(C.clone(), info=info)  # same content, another tensor
    assert info["factor"] == "memory"
    C2 = C.clone()
    F.cov_factor(C2)
    C2[0, 0] += 1.0  # modified in place: another digest, another factor
    F.cov_factor(C2, info=info)
    assert info["factor"] == "computed"
    assert F.FACTORISATIONS["cholesky"] == before + 2
    monkeypatch.setenv(F.ENV_MEMORY, "2")
    for s in range(1, 4):
        F.cov_factor(_spd(32, seed=s))
    assert len(F._MEMORY) == 2
    F.cov_factor(C, info=info)  # evicted: computed again
    assert info["factor"] == "computed"


@pytest.fixture()
def corpus_file(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(f"The capital of France {i} is Paris. Bob Jones {i} speaks French." for i in range(60)))
    return f"file:{p}"


def test_factors_of_cached_statistics_are_cached_on_disk(tmp_path, corpus_file, monkeypatch):
    m = tiny_model("gpt2")
    kw = dict(corpus=corpus_file, samples=60, cache_dir=tmp_path / "c", progress=False)
    C = S.key_second_moments(m, [0], **kw)[0]
    key, stats_file = S.source_of(C)
    assert key.fingerprint == m.base_fingerprint and stats_file.is_file()
    info: dict = {}
    f = F.cov_factor(C, info=info)
    assert info["factor"] == "computed"
    path = F.factor_path(stats_file, "cholesky")
    assert path.is_file() and path.parent == stats_file.parent
    assert [r["path"] for r in S.describe_cache(tmp_path / "c")] == [str(stats_file)]  # kme stats list
    F.clear_memory()  # as a fresh process: no factorisation, the file is read
    n = sum(F.FACTORISATIONS.values())
    again = F.cov_factor(S.key_second_moments(m, [0], **kw)[0], info=info)
    assert info["factor"] == "disk" and sum(F.FACTORISATIONS.values()) == n
    assert torch.equal(again.tensors["L"] if f.method == "cholesky" else again.tensors["LU"],
                       f.tensors["L"] if f.method == "cholesky" else f.tensors["LU"])
    # the projector too, per threshold
    P1, d1 = F.cached_null_space_projector(C, 0.05, relative=True, info=info)
    assert info["factor"] == "computed"
    F.clear_memory()
    P2, d2 = F.cached_null_space_projector(C, 0.05, relative=True, info=info)
    assert info["factor"] == "disk" and d1 == d2 and torch.equal(P1, P2)
    P3, d3 = F.cached_null_space_projector(C, 0.01, relative=True, info=info)
    assert info["factor"] == "computed"
    ref, dref = null_space_projector(C, 0.01, relative=True)
    assert d3 == dref and torch.equal(P3, ref)
    # a truncated file is recomputed (and rewritten)
    F.clear_memory()
    path.write_bytes(path.read_bytes()[:1000])
    F.cov_factor(C, info=info)
    assert info["factor"] == "computed" and sum(F.FACTORISATIONS.values()) > n
    F.clear_memory()
    F.cov_factor(C, info=info)
    assert info["factor"] == "disk"


def test_a_factor_file_with_another_key_is_not_reused(tmp_path, corpus_file):
    m = tiny_model("gpt2")
    kw = dict(corpus=corpus_file, samples=60, cache_dir=tmp_path / "c", progress=False)
    C = S.key_second_moments(m, [0], **kw)[0]
    _, stats_file = S.source_of(C)
    F.cov_factor(C)
    F.clear_memory()
    # the statistics file is replaced by other statistics under the same name: the digest differs
    other = S.key_second_moments(m, [0], **kw)[0] * 2
    S._SOURCES[other] = S.source_of(C)
    info: dict = {}
    f = F.cov_factor(other, info=info)
    assert info["factor"] == "computed"
    x = torch.randn(other.shape[0], dtype=torch.float64)
    assert _rel(other.double() @ f.solve(x), x) < 1e-6


def test_a_second_memit_edit_on_the_same_layers_reuses_the_factors():
    from kme import build_plugin_manager
    from kme.conformance import default_requests
    from kme_editlib.testing import TINY_TARGET_PARAMS

    pytest.importorskip("kme_memit")
    pm = build_plugin_manager()
    m = tiny_model("gpt2", pm)
    params = {**TINY_TARGET_PARAMS, "layers": [0, 1], "v_num_grad_steps": 2}
    n = sum(F.FACTORISATIONS.values())
    h1 = m.edit("memit", default_requests()[:1], params)
    assert set(h1.meta["factor"].values()) <= {"computed", "disk"}
    computed = sum(F.FACTORISATIONS.values()) - n
    assert computed <= 2
    h2 = m.edit("memit", default_requests()[1:2], params)
    assert h2.meta["factor"] == {"0": "memory", "1": "memory"}
    assert sum(F.FACTORISATIONS.values()) - n == computed


def test_a_second_rome_edit_on_the_same_layer_does_not_factorise_again(monkeypatch):
    from kme import build_plugin_manager
    from kme.conformance import default_requests
    from kme_editlib.testing import TINY_TARGET_PARAMS

    pytest.importorskip("kme_rome")
    calls = []
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = tiny_model("gpt2", build_plugin_manager())
    params = {**TINY_TARGET_PARAMS, "layer": 1, "v_num_grad_steps": 2}
    h = m.edit("rome", default_requests()[:3], params)
    assert [r["factor"] for r in h.meta["per_request"]][1:] == ["memory", "memory"]
    assert h.meta["per_request"][0]["factor"] in ("computed", "disk")
    first = len(calls)
    assert first <= 1
    h2 = m.edit("rome", default_requests()[:1], params)
    assert h2.meta["per_request"][0]["factor"] == "memory" and len(calls) == first


def test_dead_units_do_not_make_the_covariance_singular():
    from kme_editlib.factors import factorise

    g = torch.Generator().manual_seed(0)
    keys = torch.randn(200, 6, generator=g, dtype=torch.float64)
    keys[:, [1, 4]] = 0.0  # two MLP units that never fire
    C = keys.T @ keys / 200
    method, tensors = factorise(C)
    assert method == "cholesky"
    from kme_editlib.factors import Factor

    b = torch.randn(6, 2, generator=g, dtype=torch.float64)
    b[[1, 4]] = 0.0  # an edit key is 0 on the dead units too
    x = Factor(method, tensors).solve(b)
    live = [0, 2, 3, 5]
    expect = torch.linalg.solve(C[live][:, live], b[live])
    assert torch.allclose(x[live], expect, atol=1e-9) and torch.all(x[[1, 4]] == 0)
    healthy = torch.randn(50, 6, generator=g, dtype=torch.float64)
    H = healthy.T @ healthy
    assert torch.equal(factorise(H)[1]["L"], torch.linalg.cholesky(H))  # unchanged without dead units


def test_rounding_below_zero_gets_the_smallest_ridge_that_makes_c_positive_definite():
    from kme_editlib.factors import JITTERS, factorise

    g = torch.Generator().manual_seed(1)
    keys = torch.randn(3, 8, generator=g, dtype=torch.float64)
    C = keys.T @ keys  # rank 3 < 8, no dead unit
    evals, evecs = torch.linalg.eigh(C)
    evals[:5] = -1e-9 * float(evals.max())  # the null space, as float32 sums round it
    C = evecs @ torch.diag(evals) @ evecs.T
    assert int(torch.linalg.cholesky_ex(C)[1]) != 0
    method, tensors = factorise(C)
    assert method == "cholesky"
    L = tensors["L"]
    ridge = (L @ L.T - C).diagonal() / float(C.diagonal().max())
    assert float(ridge.mean()) == pytest.approx(min(j for j in JITTERS if j > 1e-9), rel=1e-3)
    # the live directions are solved as before: a key in C's range keeps C^-1 k's image
    k = keys[0]
    x = torch.cholesky_solve(k[:, None], L)[:, 0]
    assert torch.allclose(C @ x, k, atol=1e-4)
