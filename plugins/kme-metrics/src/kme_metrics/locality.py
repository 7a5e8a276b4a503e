"""Locality (survey Eq. 4-7) as an agreement rate with the unedited model.

The survey defines locality through the disagreement indicator ``1{f*(x) != f(x)}`` over
out-of-scope inputs ``x in O_e`` (a request's ``neighborhood`` prompts). kme reports its
complement, the **agreement rate** ``E_x 1{f*(x) = f(x)}``: higher is better, 1.0 means the
edit left every out-of-scope answer unchanged.

- per request: Eq. 6 (agreement form) over that request's neighbourhood prompts;
- details: Eq. 7 over the union ``O_E`` of the evaluated requests' neighbourhood prompts
  (each distinct prompt counted once).

What "the model's output" ``f(x)`` is, is the ``mode`` param:

- ``greedy`` (default, ``greedy-agreement``): the greedy continuation of as many tokens as the
  probe's answer has; outputs agree when the continuations are identical strings.
- ``top1`` (``top1-agreement``): the single most probable next token.

The unedited outputs are computed once per run in :meth:`Locality.prepare` and kept in the
run's cache (``context.cache["locality"]``); an output missing from the cache is computed on
the base model (``model.suspended()``) when first needed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

from kme import Params

from kme_metrics.base import KmeMetric, eval_batch_size, probe_means, request_counters, unedited

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest, EditedModel, EvalContext

__all__ = ["Locality", "model_outputs"]

_SEP = "\x1f"


def _keys(model: "EditedModel", requests: list["EditRequest"], mode: str) -> list[list[str]]:
    """Per request, the cache keys of its neighbourhood probes (prompt, plus answer length in
    greedy mode)."""
    out = []
    for r in requests:
        if mode == "top1":
            out.append([p.prompt for p in r.neighborhood])
        else:
            out.append([f"{len(model.target_ids(p.prompt, p.target))}{_SEP}{p.prompt}" for p in r.neighborhood])
    return out


def model_outputs(model: "EditedModel", keys: list[str], mode: str, batch_size: int) -> dict[str, Any]:
    """The model's output for each distinct key: a token id (``top1``) or a continuation
    (``greedy``; one batched ``generate`` call per distinct answer length)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    if mode == "top1":
        lp = model.next_token_logprobs(keys, batch_size=batch_size)
        return dict(zip(keys, (int(i) for i in lp.argmax(-1).tolist())))
    groups: dict[int, list[str]] = defaultdict(list)
    for k in keys:
        n, prompt = k.split(_SEP, 1)
        groups[int(n)].append(prompt)
    out: dict[str, Any] = {}
    for n, prompts in sorted(groups.items()):
        texts = model.generate(prompts, max_new_tokens=n, batch_size=batch_size)
        out.update({f"{n}{_SEP}{p}": t for p, t in zip(prompts, texts)})
    return out


class LocalityParams(Params):
    mode: Literal["greedy", "top1"] = "greedy"


class Locality(KmeMetric):
    """Agreement rate with the unedited model on neighbourhood prompts (survey Eq. 4-7)."""

    Params = LocalityParams
    name = "locality"
    description = ("Agreement rate with the unedited model on out-of-scope (neighbourhood) prompts, "
                   "1 - Loc of survey Eq. 6 per edit (Eq. 7 pooled in details); higher is better; "
                   "mode: greedy (default) | top1")
    scoring = "greedy-agreement"
    equation = "1 - survey Eq. 6 (per edit); 1 - Eq. 7 = details.pooled_over_unique_probes"

    def scoring_label(self) -> str:
        return f"{self.params.mode}-agreement"

    def _reference(self, model: "EditedModel", keys: list[str], context: "EvalContext") -> dict[str, Any]:
        cache = context.cache.setdefault(self.name, {}).setdefault(self.params.mode, {})
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing:
            with unedited(model):
                cache.update(model_outputs(model, missing, self.params.mode, eval_batch_size(context)))
        return cache

    def prepare(self, model: "EditedModel", requests: list["EditRequest"], context: "EvalContext") -> None:
        keys = [k for ks in _keys(model, requests, self.params.mode) for k in ks]
        self._reference(model, keys, context)

    def compute(self, model: "EditedModel", requests: list["EditRequest"],
                context: "EvalContext") -> list[float | None]:
        per = _keys(model, requests, self.params.mode)
        flat = [k for ks in per for k in ks]
        ref = self._reference(model, flat, context)
        now = model_outputs(model, flat, self.params.mode, eval_batch_size(context))
        agree = {k: float(now[k] == ref[k]) for k in now}
        out: list[float | None] = [sum(agree[k] for k in ks) / len(ks) if ks else None for ks in per]
        self.record(context, {
            **request_counters(out),
            "probes": len(flat), "probes_sum": sum(agree[k] for k in flat),
            "unique_probes": len(agree), "unique_sum": sum(agree.values()),
        })
        return out

    def derive(self, c: dict[str, float]) -> dict[str, float | None]:
        return probe_means(c, unique=True)
