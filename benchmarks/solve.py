"""Per-edit cost of the closed-form solves before and after factorising ``C`` once.

For each ``d_ff`` a random symmetric positive-definite ``C`` (the second moment of
``3·d_ff`` random keys with spread-out scales) stands in for the key statistics; one thread.

Columns:

- factorise s: the one-time cost, float64 Cholesky of ``C`` (kme_editlib.factors);
- ROME before / after: ``C⁻¹k`` per edit, the uncached float64 ``torch.linalg.solve`` vs
  ``cholesky_solve`` with the cached factor (kme_editlib.solvers.rank_one_update);
- MEMIT before / after: ``Δ = R Kᵀ (λC + K Kᵀ)⁻¹`` for ``n`` keys per layer, the d_ff × d_ff
  solve vs the Woodbury form on the cached factor (kme_editlib.solvers.mass_update);
- rel. diff: the largest relative difference (Frobenius) between before and after.

Usage::

    python benchmarks/solve.py [--dims 2048,6400] [--keys 10] [--d-model 1600] [--repeat 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time


def _best(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="2048,6400")
    ap.add_argument("--keys", type=int, default=10, help="keys per MEMIT batch (n)")
    ap.add_argument("--d-model", type=int, default=1600, help="rows of W (GPT-2 XL: 1600)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from kme_editlib import factors as F
    from kme_editlib.solvers import mass_update, rank_one_update

    torch.set_num_threads(args.threads)
    rows = []
    for d in [int(x) for x in args.dims.split(",")]:
        g = torch.Generator().manual_seed(d)
        X = torch.randn(3 * d, d, generator=g) * torch.linspace(0.05, 3, d)
        C = X.T @ X / X.shape[0]
        del X
        W = torch.randn(args.d_model, d, generator=g)
        k, kd, v = torch.randn(d, generator=g), torch.randn(d, generator=g), torch.randn(args.d_model, generator=g)
        K, R = torch.randn(d, args.keys, generator=g), torch.randn(args.d_model, args.keys, generator=g)
        lam = d * 15000 / 16384
        F.clear_memory()
        t_fac, f = _best(lambda: (F.clear_memory(), F.cov_factor(C))[1], 1)
        t_rb, rb = _best(lambda: rank_one_update(W, C, k, v, direction=kd), args.repeat)
        t_ra, ra = _best(lambda: rank_one_update(W, C, k, v, direction=kd, factor=F.cov_factor(C)), args.repeat)
        t_mb, mb = _best(lambda: mass_update(K, R, C, lam), args.repeat)
        t_ma, ma = _best(lambda: mass_update(K, R, C, lam, factor=F.cov_factor(C)), args.repeat)
        rel = max(float((ra - rb).norm() / rb.norm()), float((ma - mb).norm() / mb.norm()))  # type: ignore[union-attr]
        rows.append((d, f.method, t_fac, t_rb, t_ra, t_mb, t_ma, rel))
    print(f"threads={args.threads}  MEMIT keys n={args.keys}  d_model={args.d_model}  torch {torch.__version__}")
    hdr = ("d_ff", "factor", "factorise s", "ROME before s", "ROME after s", "MEMIT before s", "MEMIT after s",
           "rel. diff")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for d, m, tf, rb, ra, mb, ma, rel in rows:
        print(f"| {d} | {m} | {tf:.3f} | {rb:.3f} | {ra:.4f} | {mb:.3f} | {ma:.4f} | {rel:.1e} |")


if __name__ == "__main__":
    main()
