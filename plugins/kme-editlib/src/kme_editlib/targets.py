"""Target vectors by gradient descent, batched across requests: ROME's ``v*``, MEMIT's
``z_i``, PMET's attention and FFN hidden states.

For every request a vector ``δ_i`` is added at the request's fact token to the output of one
or more modules (the injection *points*); ``δ_i`` minimises (ROME Eq. 4, MEMIT Eq. 16)

    mean_j  -log P(o*_i | x_j ⊕ p_i)                        (x_j: random prefixes, p_i: prompt)
  + kl_factor · KL(P_δ(· | "{s_i} is a") ‖ P(· | "{s_i} is a"))   (keeps the subject's essence;
                                                            read at the subject's last token of
                                                            the KL prompt as the released code
                                                            does, or at its last token, the
                                                            paper's text: ``kl_position``)
  + weight_decay · ‖δ_i‖ / ‖v_i‖²                            (v_i: the point's value on p_i)

with Adam, ``‖δ_i‖`` clamped to ``clamp_norm_factor · ‖v_i‖`` after every step, and request
``i`` frozen as soon as its loss falls below ``early_stop_loss``. Every request owns its own
rows of the batch, so one optimisation for the whole batch gives each request exactly the
vector it would get alone, at a fraction of the cost (MEMIT's paper optimised them one at a
time). Requests that stopped early leave the batch, and the blocks below the injection
points, whose outputs cannot change, are computed once and replayed from memory afterwards.

A method that adds a term of its own to this objective (BIRD's subject/object geometry)
passes an :class:`ExtraTerm`: sequences of its own, run with the vector injected like the
rewriting ones, and a loss on their final hidden states (the LM head's input).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

import torch

from kme import KmeError, pad_sequences, progress_enabled

from kme_editlib.fit import Fit
from kme_editlib.hooks import HookSet, forward, frozen_params, module_at
from kme_editlib.tokens import FactToken, Sequence_, encode, lookup_index, request_text, target_ids_of

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["TargetConfig", "TargetResult", "optimise_targets", "Point", "KLPosition", "ExtraTerm"]

Point = tuple[int, str]
KLPosition = Literal["subject", "last"]


@dataclass
class TargetConfig:
    """Hyperparameters of the target-vector optimisation (names follow the papers' code)."""

    steps: int = 20
    lr: float = 0.5
    weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    early_stop_loss: float = 0.05
    kl_prompt: str = "{} is a"
    kl_position: KLPosition = "subject"
    fact_token: FactToken = "subject_last"
    chunk_size: int = 256
    replay_lower_layers: bool = True


@dataclass
class ExtraTerm:
    """A further term of the target objective, on sequences of its own.

    Each sequence (``kind="extra"``) gets the request's vector added at its ``index``, as the
    rewriting sequences do, and is replayed like them. ``loss(seqs, hidden)`` receives those
    sequences of one forward batch and their final hidden states (the LM head's input,
    ``[len(seqs), T, d]``) and returns one differentiable value per sequence; a request's term
    is ``weight`` times the sum over its sequences. ``in_stop``: whether the term counts in
    the early-stopping test (BIRD's released code leaves it out).
    """

    sequences: list[Sequence_]
    loss: Callable[[list[Sequence_], torch.Tensor], torch.Tensor]
    weight: float = 1.0
    in_stop: bool = False


@dataclass
class TargetResult:
    """Per point: the value on the bare prompt before the edit (``init``) and the optimised
    offset (``delta``); per request: final loss, target NLL and steps used."""

    points: list[Point]
    init: dict[Point, torch.Tensor]
    delta: dict[Point, torch.Tensor]
    loss: list[float] = field(default_factory=list)
    nll: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    seconds: float = 0.0
    extra: list[float] = field(default_factory=list)  # per request: the ExtraTerm's weighted value, if any

    def target(self, point: Point) -> torch.Tensor:
        return self.init[point] + self.delta[point]

    def per_request(self) -> list[dict[str, float | int]]:
        """Per request: Adam steps taken, final loss and target NLL (for the run record)."""
        return [{"steps": int(s), "loss": float(lo), "nll": float(n)}
                for s, lo, n in zip(self.steps, self.loss, self.nll)]


def build_sequences(model: "EditedModel", requests: list["EditRequest"], prefixes: list[str],
                    cfg: TargetConfig) -> list[Sequence_]:
    """The rewriting sequences (every prefix × request, target tokens teacher-forced) and one
    KL sequence per request."""
    if not prefixes or prefixes[0] != "":
        raise KmeError("context prefixes must start with the bare prompt ''")
    if cfg.kl_position not in ("subject", "last"):
        raise KmeError(f"unknown kl_position {cfg.kl_position!r}", hint="use subject or last")
    if cfg.kl_factor > 0 and cfg.kl_prompt.count("{}") != 1:
        raise KmeError(f"kl_prompt {cfg.kl_prompt!r} must contain exactly one '{{}}' subject slot")
    seqs: list[Sequence_] = []
    for i, r in enumerate(requests):
        text, off = request_text(r)
        tgt = target_ids_of(model, text, r.target_new)
        for prefix in prefixes:
            full = prefix + text
            pid = encode(model, full)
            idx = lookup_index(model, full, r.subject, cfg.fact_token, subject_start=len(prefix) + off)
            positions = tuple(len(pid) - 1 + t for t in range(len(tgt)))
            seqs.append(Sequence_(pid + tgt[:-1], idx, i, "rewrite", positions, tuple(tgt), bare=prefix == ""))
        if cfg.kl_factor > 0:
            kl_text = cfg.kl_prompt.format(r.subject)
            kid = encode(model, kl_text)
            idx = lookup_index(model, kl_text, r.subject, cfg.fact_token, subject_start=cfg.kl_prompt.index("{}"))
            at = idx if cfg.kl_position == "subject" else len(kid) - 1
            seqs.append(Sequence_(kid, idx, i, "kl", (at,)))
    return seqs


def optimise_targets(model: "EditedModel", requests: list["EditRequest"], points: list[Point],
                     prefixes: list[str], cfg: TargetConfig, *, progress: bool = False,
                     extra: ExtraTerm | None = None) -> TargetResult:
    """Optimise one vector per request and point, all requests in one batched optimisation
    (``extra``: a further term of the objective, see :class:`ExtraTerm`)."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    n = len(requests)
    dev = model.device
    seqs = build_sequences(model, requests, prefixes, cfg)
    if extra is not None:
        if any(s.kind != "extra" or not 0 <= s.owner < n for s in extra.sequences):
            raise KmeError("internal: extra-term sequences must have kind 'extra' and a request index as owner")
        seqs = seqs + list(extra.sequences)
    extra_r = torch.full((n,), float("nan"))
    n_rewrite = sum(1 for s in seqs if s.kind == "rewrite") // n
    d_of = {pt: _width(model, pt) for pt in points}
    deltas = {pt: torch.zeros(n, d_of[pt], device=dev, requires_grad=True) for pt in points}
    init = {pt: torch.zeros(n, d_of[pt], device=dev) for pt in points}
    have_init = torch.zeros(n, dtype=torch.bool)
    kl_init: dict[int, torch.Tensor] = {}
    opt = torch.optim.Adam(list(deltas.values()), lr=cfg.lr)
    active = torch.ones(n, dtype=torch.bool)
    loss_r = torch.full((n,), float("nan"))
    nll_r = torch.full((n,), float("nan"))
    steps_r = torch.zeros(n, dtype=torch.long)
    pad_id = model.tokenizer.pad_token_id

    replay = _replayable_block(points) if cfg.replay_lower_layers else -1
    cached: dict[int, torch.Tensor] = {}
    shape: dict[str, object] = {}
    seq_id = {id(s): i for i, s in enumerate(seqs)}
    # each request's sequences are padded to the width they have when it is optimised alone,
    # so that batching requests together reproduces their one-at-a-time vectors
    alone_width: dict[int, int] = {}
    for s in seqs:
        alone_width[s.owner] = max(alone_width.get(s.owner, 0), len(s.ids))

    fit = Fit(cfg.chunk_size, "target optimisation")
    bar = tqdm(range(cfg.steps), desc=f"target vectors ({n} requests)", disable=not progress_enabled(progress),
               leave=False)
    with frozen_params(model):
        for step in bar:
            opt.zero_grad()
            live = [s for s in seqs if active[s.owner]]
            nll_acc = torch.zeros(n)
            kl_acc = torch.zeros(n)
            extra_acc = torch.zeros(n)

            def run_chunk(width: int, chunk: list[Sequence_]) -> None:
                # nothing is committed (gradients, per-request sums) until the chunk's backward
                # pass is done, so that a chunk retried in halves on out-of-memory counts once
                ids, mask = pad_sequences([s.ids for s in chunk], pad_id, dev, width=width)
                rows = torch.arange(len(chunk), device=dev)
                idx = torch.tensor([s.index for s in chunk], device=dev)
                owner = torch.tensor([s.owner for s in chunk], device=dev)
                bare = torch.tensor([s.bare for s in chunk], device=dev)
                ids_of_chunk = [seq_id[id(s)] for s in chunk]
                ex = [k for k, s in enumerate(chunk) if s.kind == "extra"]
                final: list[torch.Tensor] = []
                with HookSet() as hs, _replaying(model, replay, step > 0, shape, cached, ids_of_chunk, ids.shape):
                    if replay >= 0 and step == 0:
                        hs.on_output(module_at(model, replay, "block"), _recorder(cached, ids_of_chunk, chunk))
                    for pt in points:
                        hs.on_output(module_at(model, *pt),
                                     _injector(pt, deltas, init, have_init, rows, idx, owner, bare, step == 0))
                    if ex:
                        hs.on_input(model.model.get_output_embeddings(), final.append)
                    logits = forward(model, ids, mask)
                ldev = logits.device  # the last block's device on a device-mapped model
                loss = torch.zeros((), device=ldev)
                nll_add: tuple[torch.Tensor, torch.Tensor] | None = None
                kl_add: tuple[torch.Tensor, torch.Tensor] | None = None
                rw = [k for k, s in enumerate(chunk) if s.kind == "rewrite"]
                if rw:
                    r_idx = torch.tensor([k for k in rw for _ in chunk[k].loss_positions], device=ldev)
                    p_idx = torch.tensor([p for k in rw for p in chunk[k].loss_positions], device=ldev)
                    t_idx = torch.tensor([t for k in rw for t in chunk[k].loss_tokens], device=ldev)
                    lp = torch.log_softmax(logits[r_idx, p_idx].float(), -1).gather(-1, t_idx[:, None])[:, 0]
                    seq_of = torch.tensor([j for j, k in enumerate(rw) for _ in chunk[k].loss_positions], device=ldev)
                    lens = torch.tensor([len(chunk[k].loss_positions) for k in rw], device=ldev, dtype=lp.dtype)
                    per_seq = -torch.zeros(len(rw), device=ldev).index_add(0, seq_of, lp) / lens
                    loss = loss + per_seq.sum() / n_rewrite
                    nll_add = (torch.tensor([chunk[k].owner for k in rw]), per_seq.detach().cpu() / n_rewrite)
                kl_rows = [k for k, s in enumerate(chunk) if s.kind == "kl"]
                if kl_rows:
                    r_idx = torch.tensor(kl_rows, device=ldev)
                    p_idx = torch.tensor([chunk[k].loss_positions[0] for k in kl_rows], device=ldev)
                    cur = torch.log_softmax(logits[r_idx, p_idx].float(), -1)
                    owners = [chunk[k].owner for k in kl_rows]
                    if step == 0:
                        for j, o in enumerate(owners):
                            kl_init[o] = cur[j].detach().clone()
                    ref = torch.stack([kl_init[o] for o in owners])
                    kl = (cur.exp() * (cur - ref)).sum(-1)
                    loss = loss + cfg.kl_factor * kl.sum()
                    kl_add = (torch.tensor(owners), kl.detach().cpu())
                extra_add: tuple[torch.Tensor, torch.Tensor] | None = None
                if ex:
                    assert extra is not None
                    hidden = final[-1]
                    term = extra.weight * extra.loss([chunk[k] for k in ex],
                                                     hidden[torch.tensor(ex, device=hidden.device)]).float()
                    loss = loss + term.sum().to(ldev)
                    extra_add = (torch.tensor([chunk[k].owner for k in ex]), term.detach().cpu())
                if loss.requires_grad:
                    params = [deltas[pt] for pt in points]
                    grads = torch.autograd.grad(loss, params, allow_unused=True)
                    for p_, g in zip(params, grads):  # the sums loss.backward() would leave
                        if g is not None:
                            p_.grad = g if p_.grad is None else p_.grad + g
                if nll_add is not None:
                    nll_acc.index_add_(0, *nll_add)
                if kl_add is not None:
                    kl_acc.index_add_(0, *kl_add)
                if extra_add is not None:
                    extra_acc.index_add_(0, *extra_add)

            for width, chunk in _chunks(live, alone_width, cfg.chunk_size):
                fit.run(len(chunk), lambda s, e, width=width, chunk=chunk: run_chunk(width, chunk[s:e]))
            if step == 0 and not bool(have_init.all()):
                raise KmeError("internal: the bare prompt's value was not captured for every request")
            wd = torch.zeros(n, device=dev)
            for pt in points:  # the norm's gradient at zero is zero in torch
                wd = wd + deltas[pt].norm(dim=-1) / init[pt].norm(dim=-1).clamp_min(1e-12) ** 2
            wd_act = wd * active.to(dev)
            if wd_act.requires_grad:
                (cfg.weight_decay * wd_act.sum()).backward()
            total = nll_acc + cfg.kl_factor * kl_acc + cfg.weight_decay * wd.detach().cpu()
            if extra is not None:
                extra_r = torch.where(active, extra_acc, extra_r)
                if extra.in_stop:
                    total = total + extra_acc
            loss_r = torch.where(active, total, loss_r)
            nll_r = torch.where(active, nll_acc, nll_r)
            steps_r += active.long()
            active &= ~(total < cfg.early_stop_loss)
            if progress:
                bar.set_postfix(active=int(active.sum()), loss=float(loss_r.mean()))
            if not bool(active.any()) or step == cfg.steps - 1:
                break
            frozen = {pt: deltas[pt].detach()[~active.to(dev)].clone() for pt in points}
            opt.step()
            with torch.no_grad():
                off = ~active.to(dev)
                for pt in points:
                    d = deltas[pt]
                    d[off] = frozen[pt]
                    max_norm = cfg.clamp_norm_factor * init[pt].norm(dim=-1, keepdim=True)
                    norm = d.norm(dim=-1, keepdim=True)
                    d.copy_(torch.where(norm > max_norm, d * max_norm / norm.clamp_min(1e-12), d))
    bar.close()
    return TargetResult(points=list(points), init={pt: v.detach() for pt, v in init.items()},
                        delta={pt: v.detach().clone() for pt, v in deltas.items()}, loss=loss_r.tolist(),
                        nll=nll_r.tolist(), steps=steps_r.tolist(), seconds=time.perf_counter() - t0,
                        extra=extra_r.tolist() if extra is not None else [])


def _chunks(live: list[Sequence_], alone_width: dict[int, int], size: int) -> Iterator[tuple[int, list[Sequence_]]]:
    """``(width, sequences)`` forward batches: sequences grouped by their request's alone
    width, in order, at most ``size`` per batch."""
    for width in sorted({alone_width[s.owner] for s in live}):
        group = [s for s in live if alone_width[s.owner] == width]
        for start in range(0, len(group), size):
            yield width, group[start:start + size]


def _replayable_block(points: list[Point]) -> int:
    """The highest block whose output no injection changes: below the lowest point, or that
    block itself when every point at it is its output (the injection is added afterwards)."""
    low = min(layer for layer, _ in points)
    return low if all(part == "block" for layer, part in points if layer == low) else low - 1


def _recorder(cached: dict[int, torch.Tensor], ids: list[int], chunk: list[Sequence_]):  # type: ignore[no-untyped-def]
    def fn(out: torch.Tensor) -> None:
        for r, (i, s) in enumerate(zip(ids, chunk)):
            cached[i] = out[r, : len(s.ids)].detach().clone()

    return fn


class _replaying:
    """Blocks ``0..upto`` skip their computation: the lower ones pass their input through and
    block ``upto`` returns the output recorded for each sequence at the first step."""

    def __init__(self, model: "EditedModel", upto: int, on: bool, shape: dict, cached: dict[int, torch.Tensor],
                 ids: list[int], batch_shape: torch.Size):
        self.model, self.upto, self.on = model, upto, on and upto >= 0
        self.shape, self.cached, self.ids, self.batch_shape = shape, cached, ids, batch_shape
        self.patched: list[torch.nn.Module] = []
        self.hook = None

    def _wrap(self, out: torch.Tensor) -> object:
        kind = self.shape.get("kind")
        if kind == "tuple":
            return (out, *([None] * (int(self.shape["len"]) - 1)))  # type: ignore[call-overload]
        return out

    def __enter__(self) -> "_replaying":
        if self.upto < 0:
            return self
        top = module_at(self.model, self.upto, "block")
        if not self.on:  # first step: learn the blocks' output structure
            def note(_m: torch.nn.Module, _i: object, out: object) -> None:
                self.shape["kind"] = "tuple" if isinstance(out, tuple) else "tensor"
                self.shape["len"] = len(out) if isinstance(out, tuple) else 1

            self.hook = top.register_forward_hook(note)
            return self
        B, T = self.batch_shape
        ref = self.cached[self.ids[0]]
        full = ref.new_zeros(B, T, ref.shape[-1])
        for r, i in enumerate(self.ids):
            c = self.cached[i]
            full[r, : c.shape[0]] = c
        for layer in range(self.upto + 1):
            block = module_at(self.model, layer, "block")
            if layer == self.upto:
                block.forward = lambda *a, **k: self._wrap(full)  # type: ignore[method-assign]
            else:
                block.forward = lambda *a, **k: self._wrap(a[0] if a else k["hidden_states"])  # type: ignore[method-assign]
            self.patched.append(block)
        return self

    def __exit__(self, *exc: object) -> None:
        for block in self.patched:
            del block.forward
        if self.hook is not None:
            self.hook.remove()


def _width(model: "EditedModel", pt: Point) -> int:
    layer, part = pt
    if part == "block":
        part = "mlp_out"
    name = model.weight_name(layer, part)  # type: ignore[arg-type]
    return int(model.layout.out_weight_as_linear(model.parameter(name)).shape[0])


def _injector(pt: Point, deltas: dict, init: dict, have_init: torch.Tensor, rows: torch.Tensor, idx: torch.Tensor,
              owner: torch.Tensor, bare: torch.Tensor, record: bool):  # type: ignore[no-untyped-def]
    """Adds each row's request's vector at its fact token; the vectors live on the model's
    (first) device, the module's output may be on another (device-mapped models): the row and
    position indices and the vectors go to the output's device, the recorded values back."""
    def fn(out: torch.Tensor) -> torch.Tensor:
        r, i = rows.to(out.device), idx.to(out.device)
        here = out[r, i]
        if record and bool(bare.any()):
            b = bare.nonzero()[:, 0]
            init[pt][owner[b]] = here[b.to(out.device)].detach().float().to(init[pt].device)
            have_init[owner[b].cpu()] = True
        return out.index_put((r, i), here + deltas[pt][owner].to(out.device, out.dtype))

    return fn
