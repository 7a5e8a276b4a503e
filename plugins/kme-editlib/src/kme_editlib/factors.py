"""Factorisations of the key second moment ``C``, computed once and reused by every edit.

ROME needs ``C⁻¹k`` per edit, MEMIT and PMET ``(λC + K Kᵀ)⁻¹`` and AlphaEdit a projector
built from ``C``'s eigenvectors. A solve against the ``d_ff × d_ff`` matrix costs seconds at
GPT-2 XL width and about a minute at 16,384, so it is done once per statistics file:

- :func:`cov_factor`: the float64 Cholesky factor ``L`` of ``C`` (``C = L Lᵀ``); an LU
  factorisation when ``C`` is not numerically positive definite. ROME solves ``C⁻¹k`` with
  it; MEMIT/PMET solve ``(λC + K Kᵀ)⁻¹`` by the Woodbury identity, an ``n × n`` system for
  ``n`` keys (:func:`kme_editlib.solvers.mass_update`). ``λ`` is not part of the factor.
- :func:`cached_null_space_projector`: AlphaEdit's ``P`` and its dimension, per threshold.

Each result is kept in memory (least recently used first out, at most
``$KME_FACTOR_MEMORY`` entries, default 8) and, when ``C`` came from a statistics file
(:func:`kme_editlib.stats.key_second_moments` registers where each tensor it returns was
read from), on disk beside that file::

    <stats file stem>.factor-cholesky.safetensors
    <stats file stem>.factor-nullspace-t<threshold>-<abs|rel>.safetensors

The key of an entry is the statistics key (model fingerprint, module, corpus, samples,
max length), the kind and its parameters, and a digest of ``C``'s content; a file whose key
differs, or that cannot be read, is recomputed and overwritten. :data:`FACTORISATIONS`
counts the factorisations really computed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.weak import WeakIdKeyDictionary

from kme_editlib.stats import StatsKey, _save, source_of

__all__ = ["Factor", "FACTORISATIONS", "DEAD_UNIT_TOL", "JITTERS", "cov_factor", "cached_null_space_projector",
           "clear_memory", "factor_path", "factor_meta", "ENV_MEMORY"]

ENV_MEMORY = "KME_FACTOR_MEMORY"
FACTOR_VERSION = "2"
FACTORISATIONS: Counter[str] = Counter()
"""How many factorisations were computed, by kind (``cholesky``, ``lu``, ``eigh``)."""

_LOCK = threading.Lock()
_MEMORY: OrderedDict[tuple, "Factor"] = OrderedDict()


@dataclass
class Factor:
    """A factorisation of ``C`` (``method``: ``cholesky``, ``lu`` or ``nullspace``) and where it
    came from this time (``source``: ``computed``, ``memory`` or ``disk``; ``seconds``)."""

    method: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, str] = field(default_factory=dict)
    source: str = "computed"
    seconds: float = 0.0

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """``C⁻¹ b`` in float64 for ``b`` [d] or [d, n]."""
        B = b.detach().to(torch.float64)
        vec = B.dim() == 1
        if vec:
            B = B[:, None]
        if self.method == "cholesky":
            # two triangular solves (what cholesky_solve does, ~10x faster for few right-hand sides)
            L = self.tensors["L"]
            X = torch.linalg.solve_triangular(L.mT, torch.linalg.solve_triangular(L, B, upper=False), upper=True)
        elif self.method == "lu":
            X = torch.linalg.lu_solve(self.tensors["LU"], self.tensors["pivots"], B)
        else:  # pragma: no cover - programming error
            raise ValueError(f"a {self.method!r} factor does not solve")
        return X[:, 0] if vec else X

    @property
    def positive_definite(self) -> bool:
        return self.method == "cholesky"

    def info(self) -> dict[str, object]:
        return {"factor": self.source, "factor_method": self.method, "factor_seconds": self.seconds}


def _memory_bound() -> int:
    try:
        return max(0, int(os.environ.get(ENV_MEMORY, "8")))
    except ValueError:
        return 8


def clear_memory() -> None:
    """Forget every factor kept in memory (the disk cache stays)."""
    with _LOCK:
        _MEMORY.clear()


_DIGESTS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _digest(cov: torch.Tensor) -> str:
    """:func:`_content_digest`, remembered per tensor until it is modified in place."""
    hit = _DIGESTS.get(cov)
    if hit is not None and hit[0] == cov._version:
        return hit[1]
    digest = _content_digest(cov)
    _DIGESTS[cov] = (cov._version, digest)
    return digest


def _content_digest(cov: torch.Tensor) -> str:
    """A digest of ``C``'s shape, dtype, diagonal and a strided sample of its entries."""
    c = cov.detach().cpu()
    flat = c.reshape(-1)
    step = max(1, flat.numel() // 1_000_003)
    h = hashlib.sha256(f"{tuple(c.shape)}|{c.dtype}".encode())
    h.update(flat[::step].to(torch.float64).numpy().tobytes())
    if c.dim() == 2:
        h.update(torch.diagonal(c).to(torch.float64).numpy().tobytes())
    return h.hexdigest()[:32]


def factor_path(stats_file: Path, kind: str) -> Path:
    """The cache file of factor ``kind`` beside the statistics file ``stats_file``."""
    name = stats_file.name
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    return stats_file.with_name(f"{stem}.factor-{kind}.safetensors")


def _entry_meta(src: StatsKey | None, kind: str, params: dict[str, str], digest: str) -> dict[str, str]:
    meta = {"factor_kind": kind, "factor_version": FACTOR_VERSION, "digest": digest,
            **{f"param_{k}": v for k, v in params.items()}}
    if src is not None:
        meta.update(src.meta())
    return meta


def _load(path: Path, meta: dict[str, str], shape: tuple[int, int]) -> Factor | None:
    """The factor in ``path`` if it is complete and its key is ``meta``; else None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            got = dict(f.metadata() or {})
            if any(got.get(k) != v for k, v in meta.items()):
                return None
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        method = got.get("method", "")
        need = {"cholesky": ("L",), "lu": ("LU", "pivots"), "nullspace": ("P",)}.get(method)
        if need is None or any(k not in tensors for k in need):
            return None
        if tuple(tensors[need[0]].shape) != shape or not all(torch.isfinite(tensors[k]).all() for k in need
                                                              if tensors[k].is_floating_point()):
            return None
        return Factor(method, tensors, got, source="disk")
    except Exception:  # a partial or corrupt file: recompute
        return None


def _cached(cov: torch.Tensor, kind: str, params: dict[str, str], compute, info: dict | None) -> Factor:
    t0 = time.perf_counter()
    where = source_of(cov)
    src, stats_file = where if where is not None else (None, None)
    digest = _digest(cov)
    meta = _entry_meta(src, kind, params, digest)
    mkey = tuple(sorted(meta.items()))
    n = int(cov.shape[0])
    with _LOCK:
        hit = _MEMORY.get(mkey)
        if hit is not None:
            _MEMORY.move_to_end(mkey)
    if hit is not None:
        out = Factor(hit.method, hit.tensors, hit.meta, source="memory", seconds=time.perf_counter() - t0)
    else:
        path = factor_path(stats_file, kind) if stats_file is not None else None
        out = _load(path, meta, (n, n)) if path is not None and path.is_file() else None
        if out is None:
            method, tensors = compute()
            out = Factor(method, tensors, {**meta, "method": method}, source="computed")
            if path is not None:
                try:
                    _save(path, tensors, {**meta, "method": method,
                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
                except OSError:  # pragma: no cover - a read-only cache still works from memory
                    pass
        out.seconds = time.perf_counter() - t0
        bound = _memory_bound()
        if bound:
            with _LOCK:
                _MEMORY[mkey] = Factor(out.method, out.tensors, out.meta)
                _MEMORY.move_to_end(mkey)
                while len(_MEMORY) > bound:
                    _MEMORY.popitem(last=False)
    if info is not None:
        info.update(out.info())
    return out


DEAD_UNIT_TOL = 1e-8
"""A key coordinate whose ``C`` diagonal is at most this times the largest is a dead unit."""
JITTERS = (1e-10, 1e-8, 1e-6)
"""Ridges tried, times the largest diagonal, when ``C`` is still singular without its dead
units (statistics summed in float32 carry rounding of about 1e-7 of the largest entry)."""


def factorise(cov: torch.Tensor) -> tuple[str, dict[str, torch.Tensor]]:
    """Factorise ``C`` in float64: Cholesky, or LU if ``C`` is not numerically positive definite.

    A ``C`` that Cholesky accepts is factorised unchanged (as the papers' code solves it).
    Otherwise: a key coordinate that (almost) never fires on the corpus (a dead MLP unit:
    diagonal at most :data:`DEAD_UNIT_TOL` of the largest) makes ``C`` singular; its row and
    column are zeroed and its diagonal set to the mean of the others, so ``C^-1 k`` is the
    solve over the live coordinates and ``k_i / c`` (≈ 0) on the dead one. If rounding
    still leaves a zero eigenvalue, the smallest ridge of :data:`JITTERS` that makes ``C``
    positive definite is added. A ``C`` with a negative diagonal is not a second moment and
    gets LU."""
    C = cov.detach().to(torch.float64)
    L, bad = torch.linalg.cholesky_ex(C)
    FACTORISATIONS["cholesky"] += 1
    if int(bad) == 0:
        return "cholesky", {"L": L.contiguous()}
    diag = C.diagonal()
    if bool((diag >= 0).all()) and float(diag.max()) > 0:
        C = C.clone()
        dead = diag <= DEAD_UNIT_TOL * float(diag.max())
        if bool(dead.any()):
            C[dead, :] = 0.0
            C[:, dead] = 0.0
            C[dead, dead] = C.diagonal()[~dead].mean()
        scale = float(C.diagonal().max())
        eye = torch.eye(C.shape[0], dtype=C.dtype, device=C.device)
        for jitter in ((0.0, *JITTERS) if bool(dead.any()) else JITTERS):  # no dead unit: C is as it failed above
            L, bad = torch.linalg.cholesky_ex(C + jitter * scale * eye if jitter else C)
            FACTORISATIONS["cholesky"] += 1
            if int(bad) == 0:
                return "cholesky", {"L": L.contiguous()}
    LU, pivots = torch.linalg.lu_factor(C)
    FACTORISATIONS["lu"] += 1
    return "lu", {"LU": LU.contiguous(), "pivots": pivots.contiguous()}


def cov_factor(cov: torch.Tensor, info: dict | None = None) -> Factor:
    """The float64 factorisation of ``C`` (memory, disk or computed); ``info`` receives
    ``factor`` (where it came from), ``factor_method`` and ``factor_seconds``."""
    return _cached(cov, "cholesky", {}, lambda: factorise(cov), info)


def cached_null_space_projector(cov: torch.Tensor, threshold: float, *, relative: bool = False,
                                info: dict | None = None) -> tuple[torch.Tensor, int]:
    """:func:`kme_editlib.solvers.null_space_projector`, computed once per ``C`` and threshold."""
    from kme_editlib.solvers import null_space_projector

    def compute() -> tuple[str, dict[str, torch.Tensor]]:
        FACTORISATIONS["eigh"] += 1
        P, dim = null_space_projector(cov, threshold, relative=relative)
        return "nullspace", {"P": P.contiguous(), "dim": torch.tensor([dim], dtype=torch.int64)}

    kind = f"nullspace-t{threshold!r}-{'rel' if relative else 'abs'}"
    f = _cached(cov, kind, {"threshold": repr(float(threshold)), "relative": str(bool(relative))}, compute, info)
    return f.tensors["P"], int(f.tensors["dim"][0])


def factor_meta(infos: dict[int, dict]) -> dict[str, object]:
    """What an edit's meta records about the factorisations of ``C`` it used, per layer:
    ``factor`` (``computed``, ``memory`` or ``disk``), ``factor_method``, ``factor_seconds``."""
    if not infos:
        return {}
    return {"factor": {str(layer): i.get("factor") for layer, i in infos.items()},
            "factor_method": {str(layer): i.get("factor_method") for layer, i in infos.items()},
            "factor_seconds": sum(float(i.get("factor_seconds", 0.0)) for i in infos.values())}
