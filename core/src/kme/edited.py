"""The composed edited model: a base LM, the stack of edits applied to it, and the one
inference path every metric uses.

Parametric edits are recorded as per-parameter deltas; the first time a parameter is touched
its pristine value is kept, so undoing any subset of edits restores the weights bit for bit
(pristine value, then the remaining edits' deltas re-added in order). A delta is kept in at
least float32 (the editor's values, not rounded to a bfloat16/float16 weight) and applied as
``weight = (weight.float() + delta).to(weight.dtype)`` on the weight's own device: one
deterministic rounding, replayed identically by undo. Memory editors
contribute at inference through the ``kme_memory_lookup`` hook, so parametric and memory
editors compose: IKE's demonstrations are prepended to queries answered by MEMIT-edited
weights.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from kme.batching import pad_sequences
from kme.data import EditRequest, Location, MemoryHit
from kme.errors import KmeError
from kme.models.layouts import ModelLayout

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Editor
    from kme.plugins import KmePluginManager
    from kme.presets import ModelIdentity

__all__ = ["EditedModel", "EditHandle", "TargetScore", "join_target"]

_handle_ids = itertools.count(1)


@dataclass
class EditHandle:
    """Everything one ``kme_edit`` call changed: weight deltas, memory items, extension state.

    Editors fill it through :meth:`add_delta` / :meth:`set_param` (weights), ``memory``
    (JSON-serialisable items), ``state`` (tensors of added modules, saved in patches) and
    :meth:`on_undo` (callbacks that remove added modules). ``meta`` holds what the editor
    decided (JSON values; written to ``edits.jsonl`` under ``decisions``); a list
    ``meta["per_request"]`` aligned with ``requests`` is split per request.
    """

    editor_name: str
    params: dict[str, Any]
    requests: list[EditRequest]
    model: "EditedModel" = field(repr=False)
    editor: "Editor | None" = field(default=None, repr=False)
    deltas: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    memory: list[dict[str, Any]] = field(default_factory=list, repr=False)
    state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)
    id: int = field(default_factory=lambda: next(_handle_ids))
    _undo_callbacks: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _toggles: list[Callable[[bool], None]] = field(default_factory=list, repr=False)
    _before: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    applied: bool = True

    def add_delta(self, param_name: str, delta: torch.Tensor) -> None:
        """Add ``delta`` to parameter ``param_name``, recorded. The sum is formed in float32
        (or the weight's dtype, if wider) on the weight's device and rounded once to the
        weight's dtype; ``deltas`` keeps the float32 values, on cpu."""
        self.model._add_delta(self, param_name, delta)

    def set_param(self, param_name: str, value: torch.Tensor) -> None:
        """Set a parameter to ``value``; recorded as the delta from its current value."""
        p = self.model.parameter(param_name)
        acc = _accumulate_dtype(p.dtype)
        self.add_delta(param_name, value.detach().to(device=p.device, dtype=acc) - p.detach().to(acc))

    def on_undo(self, fn: Callable[[], None]) -> None:
        """Register a callback that removes what this edit added (modules, hooks)."""
        self._undo_callbacks.append(fn)

    def on_toggle(self, fn: Callable[[bool], None]) -> None:
        """Register ``fn(enabled)`` that switches added modules off/on while the model is
        temporarily suspended (:meth:`EditedModel.suspended`)."""
        self._toggles.append(fn)

    @property
    def kind(self) -> str:
        return self.editor.capabilities.kind if self.editor is not None else "parametric"

    def manifest(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "editor": self.editor_name,
            "params": self.params,
            "requests": [r.model_dump(mode="json") for r in self.requests],
            "deltas": sorted(self.deltas),
            "memory": self.memory,
            "state": sorted(self.state),
            "meta": self.meta,
        }


@dataclass
class TargetScore:
    """Teacher-forced score of a target continuation.

    ``token_logprobs[i]`` is log P(target token i | prompt, target tokens < i);
    ``token_correct[i]`` whether the argmax at that position is target token i;
    ``pred_ids[i]`` that argmax token.
    """

    logprob: float
    token_logprobs: list[float]
    token_correct: list[bool]
    target_ids: list[int]
    pred_ids: list[int] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return len(self.target_ids)

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(1, self.n_tokens)

    @property
    def token_accuracy(self) -> float:
        return sum(self.token_correct) / max(1, len(self.token_correct))

    @property
    def all_correct(self) -> bool:
        return bool(self.token_correct) and all(self.token_correct)


def join_target(prompt: str, target: str) -> str:
    """The continuation text scored after ``prompt``: ``target`` preceded by one space,
    unless the target already starts with whitespace or the prompt ends with it."""
    if not target or target[0].isspace() or not prompt or prompt[-1].isspace():
        return target
    return " " + target


class EditedModel:
    """A Hugging Face causal LM, its tokenizer and layout, and the edits applied to it."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, layout: ModelLayout,
                 pm: "KmePluginManager", source: str = "<in-memory>"):
        self.model = model
        self.tokenizer = tokenizer
        self.layout = layout
        self.pm = pm
        self.source = source
        self.stack: list[EditHandle] = []
        self._hidden: list[EditHandle] = []  # edits switched off by suspended()
        self._pending: list[EditHandle] = []  # handles of an edit in progress
        self._pristine: dict[str, torch.Tensor] = {}
        self._params = dict(model.named_parameters())
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        from kme.models.fingerprint import model_fingerprint

        self.base_fingerprint = model_fingerprint(model)

    # -- structure ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embedding's device (for a model spread over devices by a
        ``device_map``, the first module's). Each weight stays on its own device
        (``parameter(name).device``); deltas are applied there."""
        try:
            emb = self.model.get_input_embeddings()
        except (AttributeError, NotImplementedError):
            emb = None
        if emb is not None and getattr(emb, "weight", None) is not None:
            return emb.weight.device
        return next(self.model.parameters()).device

    @property
    def devices(self) -> list[torch.device]:
        """Every device holding a weight of the model, in order of first use."""
        return list(dict.fromkeys(p.device for p in self.model.parameters()))

    def device_of(self, layer: int, part: str = "mlp_out") -> torch.device:
        """The device of ``part`` in block ``layer``: where its inputs and outputs live (for
        a device-mapped model, tensors added at that point must be moved there)."""
        module = self.layout.module(self.model, self.check_layer(layer), part)  # type: ignore[arg-type]
        for t in itertools.chain(module.parameters(), module.buffers()):
            return t.device
        return self.device

    @property
    def num_layers(self) -> int:
        return self.layout.num_layers(self.model)

    def check_layer(self, layer: int) -> int:
        """``layer`` if the model has it (negative counts from the end), else a clear error."""
        n = self.num_layers
        if not isinstance(layer, int) or not (-n <= layer < n):
            raise KmeError(f"layer {layer} does not exist: the model has {n} layers (0..{n - 1})",
                           hint="pick a layer in range, or let a locator choose it")
        return layer % n

    @property
    def context_length(self) -> int | None:
        """Most tokens one forward pass may hold (from the config), or ``None`` if unstated."""
        cfg = self.model.config
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            v = getattr(cfg, attr, None)
            if isinstance(v, int) and v > 0:
                return v
        return None

    def check_fits(self, requests: Sequence[EditRequest], where: str | None = None) -> None:
        """Refuse a request whose prompt (with its target) is longer than the model's context:
        positions past the context make the model fail deep inside (``IndexError``) or, with
        rotary embeddings, score nonsense. Checked once, when the dataset is loaded."""
        from kme.errors import DatasetRecordError

        ctx = self.context_length
        if ctx is None:
            return
        for r in requests:
            texts = [("prompt", r.text, r.target_new)]
            texts += [(f"paraphrase_prompts[{i}]", p, r.target_new) for i, p in enumerate(r.paraphrase_prompts)]
            texts += [(f"neighborhood[{i}].prompt", n.prompt, n.target) for i, n in enumerate(r.neighborhood)]
            texts += [(f"portability[{i}].prompt", q.prompt, q.target_new) for i, q in enumerate(r.portability)]
            texts += [(f"generation_prompts[{i}]", p, "") for i, p in enumerate(r.generation_prompts)]
            for name, text, target in texts:
                if len(text.encode()) + len(target.encode()) + 2 < ctx:  # a token is at least a byte
                    continue
                n = len(self._encode(text)) + len(self.target_ids(text, target) if target else [])
                if n > ctx:
                    raise DatasetRecordError(
                        f"request {r.case_id!r}: {name} with its target is {n} tokens, longer than the model's "
                        f"context of {ctx} tokens", where=where,
                        hint="shorten or leave out this record (e.g. with the dataset's limit), or use a model "
                             "with a longer context")

    def _check_length(self, n: int, text: str) -> None:
        ctx = self.context_length
        if ctx is not None and n > ctx:
            raise KmeError(f"input of {n} tokens is longer than the model's context of {ctx} tokens: "
                           f"{text[:80]!r}...", hint="shorten the prompt (or the memory context placed before it)")

    def weight_name(self, layer: int, part: str = "mlp_out") -> str:
        """Parameter name of ``part``'s weight in block ``layer`` (range-checked)."""
        return self.layout.weight_name(self.check_layer(layer), part)  # type: ignore[arg-type]

    def parameter(self, name: str) -> torch.nn.Parameter:
        try:
            return self._params[name]
        except KeyError:
            raise KmeError(f"model has no parameter {name!r}",
                           hint="use layout.weight_name(layer, part) to build parameter names") from None

    # -- editing ------------------------------------------------------------------------
    def new_handle(self, editor: "Editor", requests: Sequence[EditRequest]) -> EditHandle:
        """A fresh handle for an edit in progress; if the edit fails, the kernel rolls back
        whatever was recorded on it."""
        h = EditHandle(editor_name=editor.name, params=editor.params.model_dump(mode="json"),
                       requests=list(requests), model=self, editor=editor)
        self._pending.append(h)
        return h

    def _add_delta(self, handle: EditHandle, name: str, delta: torch.Tensor) -> None:
        p = self.parameter(name)
        if tuple(delta.shape) != tuple(p.shape):
            raise KmeError(f"delta for {name!r} has shape {tuple(delta.shape)}, parameter has {tuple(p.shape)}")
        if name not in self._pristine:
            self._pristine[name] = p.detach().to("cpu", copy=True)
        d = delta.detach().to(device="cpu", dtype=_accumulate_dtype(p.dtype), copy=True)
        with torch.no_grad():
            if name in handle.deltas:
                # Second change to the same parameter in one edit: keep a single delta whose
                # re-application (before + total) gives exactly the weights we leave.
                total = handle.deltas[name] + d
                p.copy_(handle._before[name])
                _apply_delta(p, total)
                handle.deltas[name] = total
            else:
                handle._before[name] = p.detach().clone()
                _apply_delta(p, d)
                handle.deltas[name] = d

    @property
    def identity(self) -> "ModelIdentity":
        """What presets and corpora match against: alias, weights fingerprint, config shape."""
        from kme.presets import identity_of

        return identity_of(self)

    def make_editor(self, name: str, params: dict[str, Any] | None = None, *, preset: str = "auto",
                    where: str | None = None) -> "Editor":
        """The registered editor ``name`` configured for this model: explicit ``params`` >
        the preset that matches this model (``preset``: ``auto``, ``none`` or a preset's
        name) > the editor's defaults. ``editor.resolution`` says where each param came from."""
        from kme.presets import resolve_params

        cls = self.pm.editors.get(name, where=where)
        resolved = resolve_params(self.pm, cls, params, self.identity, preset, where)
        editor = cls(resolved.params)
        editor.resolution = resolved
        return editor

    def edit(self, editor: "Editor | str", requests: Sequence[EditRequest],
             params: dict[str, Any] | None = None, location: Location | None = None, *,
             preset: str = "auto") -> EditHandle:
        """Apply ``requests`` with ``editor`` through the ``kme_edit`` hook, and push the
        handle on the stack. ``editor`` is an instance (used as configured) or a registered
        name, configured by :meth:`make_editor` from ``params`` and ``preset``."""
        if isinstance(editor, str):
            editor = self.make_editor(editor, params, preset=preset)
        if not requests:
            raise KmeError(f"editor {editor.name!r} was given no requests")
        self._pending = []
        try:
            handle = self.pm.hook.kme_edit(model=self, editor=editor, requests=list(requests), location=location)
            if handle is None:
                raise KmeError(f"no plugin applied editor {editor.name!r}")
        except BaseException:
            for h in reversed(self._pending):
                if h not in self.stack:
                    self.rollback(h)
            raise
        finally:
            for h in self._pending:
                h._before.clear()
            self._pending = []
        handle._before.clear()
        if handle not in self.stack:
            self.stack.append(handle)
        return handle

    def rollback(self, handle: EditHandle) -> None:
        """Undo a handle that may not be on the stack yet (a failed or rejected edit)."""
        if not handle.applied:
            return
        if handle in self.stack:
            self.undo(handle)
            return
        self.stack.append(handle)
        self.undo(handle)

    def undo(self, handle: EditHandle | None = None) -> None:
        """Undo one edit (``handle``) or, with no argument, every edit; weights are restored
        bit for bit."""
        targets = list(self.stack) if handle is None else [handle]
        for h in targets:
            if h not in self.stack:
                raise KmeError(f"edit {h.id} ({h.editor_name}) is not applied to this model")
        touched = set().union(*(h.deltas for h in targets)) if targets else set()
        for h in reversed(targets):
            for cb in reversed(h._undo_callbacks):
                cb()
            h.applied = False
            self.stack.remove(h)
        with torch.no_grad():
            for name in touched:
                p = self.parameter(name)
                p.copy_(self._pristine[name].to(p.device))
                for h in self.stack:
                    if name in h.deltas:
                        _apply_delta(p, h.deltas[name])
                if not any(name in h.deltas for h in self.stack + self._hidden):
                    del self._pristine[name]

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Temporarily run the unedited base model: weights restored bit for bit, memory and
        extension editors switched off; every edit is back, exactly, on exit. Edits made
        inside the block must be undone inside it."""
        if self._hidden:
            raise KmeError("suspended() cannot be nested")
        saved = list(self.stack)
        self._hidden = saved
        touched = set(self._pristine)
        with torch.no_grad():
            for name in touched:
                p = self.parameter(name)
                p.copy_(self._pristine[name].to(p.device))
        for h in saved:
            for t in h._toggles:
                t(False)
        self.stack = []
        try:
            yield
        finally:
            if self.stack:
                leftover = list(self.stack)
                self.undo()
                raise KmeError(f"{len(leftover)} edit(s) made inside suspended() were not undone; undid them")
            self.stack = saved
            self._hidden = []
            with torch.no_grad():
                for name in touched:
                    p = self.parameter(name)
                    p.copy_(self._pristine[name].to(p.device))
                    for h in saved:
                        if name in h.deltas:
                            _apply_delta(p, h.deltas[name])
            for h in saved:
                for t in h._toggles:
                    t(True)

    def check_finite(self, handle: EditHandle) -> list[str]:
        """What ``handle`` left holding NaN or inf: changed parameters (by name), added state
        tensors (``state:<name>``) and memory items (``memory[<i>]``). Every kind of edit is
        checked, so an extension's codebook or a memory item cannot diverge unnoticed."""
        bad = [n for n in handle.deltas if not torch.isfinite(self.parameter(n)).all()]
        bad += [f"state:{n}" for n, t in handle.state.items()
                if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()]
        bad += [f"memory[{i}]" for i, item in enumerate(handle.memory) if not _all_finite(item)]
        return bad

    def outputs_finite(self, prompts: Sequence[str]) -> bool:
        """Whether the next-token distributions after ``prompts`` are finite (no NaN/inf)."""
        if not prompts:
            return True
        try:
            return bool(torch.isfinite(self.next_token_logprobs(prompts, use_memory=False)).all())
        except KmeError:  # e.g. a prompt longer than the context: not this check's concern
            return True

    # -- persistence --------------------------------------------------------------------
    def save_patch(self, path: str, handles: Sequence[EditHandle] | None = None) -> None:
        from kme.patch import save_patch

        save_patch(self, path, list(self.stack if handles is None else handles))

    def load_patch(self, path: str) -> list[EditHandle]:
        from kme.patch import load_patch

        return load_patch(self, path)

    def save_pretrained(self, path: str) -> None:
        """Save the edited weights and tokenizer; memory editors' items are not weights and
        are kept only in patches."""
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    # -- inference ----------------------------------------------------------------------
    def memory_lookup(self, prompts: Sequence[str]) -> tuple[list[str], list[Any]]:
        """Per prompt: the context memory editors place before it (combined in stack order)
        and the router, if one claimed it (else ``None``)."""
        ctx = [""] * len(prompts)
        routers: list[Any] = [None] * len(prompts)
        if not any(h.kind == "memory" for h in self.stack):
            return ctx, routers
        results = self.pm.hook.kme_memory_lookup(model=self, prompts=list(prompts))
        for hits in results:
            for hit in hits or []:
                if not isinstance(hit, MemoryHit):
                    raise KmeError(f"kme_memory_lookup returned {type(hit).__name__}, expected MemoryHit")
                ctx[hit.prompt_index] += hit.context
                if hit.router is not None:
                    routers[hit.prompt_index] = hit.router
        return ctx, routers

    def memory_contexts(self, prompts: Sequence[str]) -> list[str]:
        """The text each memory editor places before each prompt, combined in stack order."""
        return self.memory_lookup(prompts)[0]

    def _routed(self, prompts: Sequence[str], use_memory: bool, local: Callable[[list[int], list[str]], list],
                remote: Callable[[Any, list[int], list[str]], list]) -> list:
        """Run ``local`` on prompts answered by this model and ``remote`` on those a memory
        editor routed elsewhere (e.g. SERAC's counterfactual model); results in prompt order."""
        if use_memory:
            ctx, routers = self.memory_lookup(prompts)
        else:
            ctx, routers = [""] * len(prompts), [None] * len(prompts)
        texts = [c + p for c, p in zip(ctx, prompts)]
        out: list = [None] * len(prompts)
        groups: dict[int, tuple[Any, list[int]]] = {}
        for i, r in enumerate(routers):
            groups.setdefault(id(r), (r, []))[1].append(i)
        for router, idx in groups.values():
            res = local(idx, [texts[i] for i in idx]) if router is None else remote(router, idx, [texts[i] for i in idx])
            for i, v in zip(idx, res):
                out[i] = v
        return out

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def _encode_cont(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def target_ids(self, prompt: str, target: str) -> list[int]:
        return self._encode_cont(join_target(prompt, target))

    @torch.no_grad()
    def score(self, prompts: Sequence[str], targets: Sequence[str], *, batch_size: int = 64,
              use_memory: bool = True) -> list[TargetScore]:
        """Teacher-forced log-probabilities of each ``target`` continuing its ``prompt``.

        Batched with right padding (positions stay correct), sorted by length to reduce padding,
        memory contexts placed before each prompt.
        """
        if len(prompts) != len(targets):
            raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
        return self._routed(
            prompts, use_memory,
            lambda idx, texts: self._score_texts(texts, [prompts[i] for i in idx], [targets[i] for i in idx],
                                                 batch_size),
            lambda router, idx, texts: router.score(texts, [targets[i] for i in idx]))

    def _score_texts(self, texts: list[str], prompts: list[str], targets: list[str],
                     batch_size: int) -> list[TargetScore]:
        seqs = []
        for c, p, t in zip(texts, prompts, targets):
            pid = self._encode(c)
            tid = self.target_ids(p, t)
            if not tid:
                raise KmeError(f"target {t!r} of prompt {p!r} encodes to no tokens")
            self._check_length(len(pid) + len(tid), c)
            seqs.append((pid, tid))
        out: list[TargetScore | None] = [None] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: -(len(seqs[i][0]) + len(seqs[i][1])))
        pad = self.tokenizer.pad_token_id
        dev = self.device
        widths = _batch_widths([len(seqs[i][0]) + len(seqs[i][1]) for i in order], batch_size)

        def run(start: int, stop: int) -> None:
            idx = order[start:stop]
            ids, mask = pad_sequences([seqs[i][0] + seqs[i][1] for i in idx], pad, dev, width=max(widths[start:stop]))
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            at = logp.device  # with a device_map the logits live where the LM head is, not at the inputs
            for r, i in enumerate(idx):
                pid, tid = seqs[i]
                pos = torch.arange(len(pid) - 1, len(pid) - 1 + len(tid), device=at)
                tgt = torch.tensor(tid, device=at)
                lp = logp[r, pos].gather(-1, tgt[:, None])[:, 0]
                pred = logp[r, pos].argmax(-1)
                out[i] = TargetScore(float(lp.sum()), lp.tolist(), (pred == tgt).tolist(), tid, pred.tolist())

        _run_halving(len(order), batch_size, run, "score")
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def next_token_logprobs(self, prompts: Sequence[str], *, batch_size: int = 64,
                            use_memory: bool = True) -> torch.Tensor:
        """Log-distribution of the next token after each prompt, ``[len(prompts), vocab]``."""
        rows = self._routed(prompts, use_memory, lambda idx, texts: list(self._next_texts(texts, batch_size)),
                            lambda router, idx, texts: list(router.next_token_logprobs(texts)))
        return torch.stack(rows) if rows else torch.empty(0)

    def _next_texts(self, texts: list[str], batch_size: int) -> list[torch.Tensor]:
        enc = [self._encode(t) for t in texts]
        for e, t in zip(enc, texts):
            self._check_length(len(e), t)
        rows: list[torch.Tensor | None] = [None] * len(enc)
        pad = self.tokenizer.pad_token_id
        order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
        widths = _batch_widths([len(enc[i]) for i in order], batch_size)

        def run(start: int, stop: int) -> None:
            idx = order[start:stop]
            ids, mask = pad_sequences([enc[i] for i in idx], pad, self.device, width=max(widths[start:stop]))
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            last = mask.sum(1) - 1
            lp = torch.log_softmax(logits[torch.arange(len(idx), device=self.device), last].float(), -1).cpu()
            for r, i in enumerate(idx):
                rows[i] = lp[r]

        _run_halving(len(order), batch_size, run, "next_token_logprobs")
        return rows  # type: ignore[return-value]

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 20, batch_size: int = 32,
                 use_memory: bool = True) -> list[str]:
        """Greedy continuations (text after the prompt), batched with left padding."""
        return self._routed(prompts, use_memory,
                            lambda idx, texts: self._generate_texts(texts, max_new_tokens, batch_size),
                            lambda router, idx, texts: router.generate(texts, max_new_tokens=max_new_tokens))

    def _generate_texts(self, texts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
        out: list[str] = [""] * len(texts)
        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"
        try:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start:start + batch_size]
                enc = tok(chunk, return_tensors="pt", padding=True).to(self.device)
                gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=tok.pad_token_id, num_beams=1)
                new = gen[:, enc["input_ids"].shape[1]:]
                for r, seq in enumerate(new):
                    out[start + r] = tok.decode(seq, skip_special_tokens=True)
        finally:
            tok.padding_side = side
        return out

    def __repr__(self) -> str:
        return f"<EditedModel {self.source!r} {self.layout.model_type} edits={len(self.stack)}>"


_OOM_WORDS = ("out of memory", "can't allocate", "cannot allocate", "could not allocate", "failed to allocate",
              "unable to allocate")


def _is_oom(e: BaseException) -> bool:
    """Whether ``e`` says the accelerator or the host could not allocate memory."""
    if isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(e, RuntimeError) and any(w in str(e).lower() for w in _OOM_WORDS)


def _batch_widths(lengths: list[int], batch_size: int) -> list[int]:
    """Per row, the longest length in its batch of ``batch_size`` consecutive rows: the width
    it is padded to, kept when a batch is halved (outputs can differ in their last bits with
    the padded width)."""
    out: list[int] = []
    for s in range(0, len(lengths), batch_size):
        part = lengths[s:s + batch_size]
        out.extend([max(part)] * len(part))
    return out


def _run_halving(n: int, batch_size: int, fn: Callable[[int, int], None], where: str) -> None:
    """``fn(start, stop)`` over ``range(n)`` in batches of ``batch_size``; a batch that runs
    out of memory is retried in halves, down to one row (then the error is raised), the smaller
    size kept for the rest, never spanning two of the original batches. Each halving is a
    structured warning (logger ``kme``, event ``batch.halved``)."""
    import gc

    import structlog

    size = max(1, int(batch_size))
    first = size
    for group in range(0, n, first):
        end = min(n, group + first)
        start = group
        while start < end:
            stop = min(end, start + size)
            try:
                fn(start, stop)
                start = stop
                continue
            except BaseException as e:  # noqa: BLE001 - re-raised unless out of memory with rows to spare
                if not _is_oom(e) or stop - start <= 1:
                    raise
                error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
            size = max(1, (stop - start) // 2)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            structlog.get_logger("kme").warning("batch.halved", where=where, batch_size=size, error=error)


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a delta is kept and added in: float32, or the weight's if wider."""
    return torch.promote_types(dtype, torch.float32) if dtype.is_floating_point else dtype


def _apply_delta(p: torch.Tensor, delta: torch.Tensor) -> None:
    """``p += delta`` on ``p``'s device, summed in float32 (or wider) and rounded once to
    ``p``'s dtype: deterministic, so replaying the same deltas gives the same bits."""
    acc = _accumulate_dtype(p.dtype)
    d = delta.to(device=p.device, dtype=acc)
    if acc == p.dtype:
        p.add_(d)
    else:
        p.copy_((p.detach().to(acc) + d).to(p.dtype))


def _all_finite(value: Any) -> bool:
    """No float (or tensor) inside ``value`` (nested lists/dicts) is NaN or inf."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all():
            return False
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return True


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
