"""Protocol-level metrics: retainability (survey Eq. 10) and scalability (Eq. 11-12).

Both compare the model after several edits with the model after fewer edits, so they apply
edits themselves: ``with model.suspended(): h = model.edit(editor, [request]); ...;
model.undo(h)`` runs an edit alone on the base model, bit for bit, without copying the model,
using the pipeline's configured editors (``context.editors``, in order) and
``context.location``. ``Acc`` is survey Eq. 3 on each edit's own prompt, in the ``scoring``
mode of the params (as for ``accuracy``).

Every value is split over requests so that the runner's mean over requests is the equation:

- retainability at a checkpoint after ``S`` steps (a step is one batch of
  ``protocol.batch_size`` edits): Eq. 10's sum telescopes to
  ``(Acc(e_1..e_S) - Acc(e_1)) / (S - 1)``; request ``j`` gets ``(acc_j - Acc(e_1)) / (S - 1)``,
  where ``acc_j`` is its accuracy now and ``Acc(e_1)`` the first step's accuracy when it was
  applied alone.
- scalability: request ``j`` of the sample gets ``single_j - acc_j`` (Eq. 11), or that divided
  by the mean single-edit accuracy of the sampled requests evaluated in the same call
  (Eq. 12); requests outside the sample get ``None``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any, ClassVar

from kme import KmeError, Params
from pydantic import Field

from kme_metrics.accuracy import edit_questions
from kme_metrics.base import KmeMetric, eval_batch_size, unedited
from kme_metrics.judging import SCORING_LABELS, ScoringMode, judge

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest, EditedModel, EvalContext

__all__ = ["Retainability", "Scalability", "ScalabilityRelative", "apply_alone", "accuracies", "sample_ids"]


def accuracies(model: "EditedModel", requests: list["EditRequest"], mode: ScoringMode, batch_size: int) -> list[float]:
    """Eq. 3 indicator (or token accuracy) of each request on its edit prompt, one batched call."""
    qs = [q for r in requests for q in edit_questions(r)]
    return judge(model, qs, mode, batch_size=batch_size) if qs else []


def _editors_signature(context: "EvalContext", mode: str) -> str:
    eds = [[e.name, e.params.model_dump(mode="json")] for e in context.editors]
    loc = context.location.model_dump(mode="json") if context.location is not None else None
    return json.dumps({"editors": eds, "location": loc, "scoring": mode}, sort_keys=True)


def apply_alone(model: "EditedModel", group: list["EditRequest"], context: "EvalContext",
                mode: ScoringMode) -> list[float] | None:
    """Apply ``group`` as one batch, alone, to the base model with every configured editor;
    return each request's accuracy, then undo. ``None`` when an editor refuses or fails."""
    if not context.editors:
        raise KmeError("this metric applies edits itself and the pipeline configures no editor",
                       hint="add an editor to the pipeline, or drop retainability/scalability from metrics")
    with unedited(model):
        handles = []
        try:
            for ed in context.editors:
                handles.append(model.edit(ed, group, location=context.location))
            return accuracies(model, group, mode, eval_batch_size(context))
        except KmeError:
            return None
        finally:
            for h in reversed(handles):
                model.undo(h)


def sample_ids(ids: list[str], size: int, seed: int) -> list[str]:
    """A deterministic sample: the ``size`` ids ranked first by a seeded hash. A request in the
    sample of a set is in the sample of every subset that holds it."""
    rank = sorted(dict.fromkeys(ids), key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).hexdigest())
    return rank[:size]


class ProtocolParams(Params):
    scoring: ScoringMode = "argmax"


class _ProtocolMetric(KmeMetric):
    """Base of the protocol metrics: the scoring label is ``scoring_prefix`` followed by the
    label of the accuracy's scoring mode (``params.scoring``)."""

    Params = ProtocolParams
    scoring_prefix: ClassVar[str] = ""

    def scoring_label(self) -> str:
        return self.scoring_prefix + SCORING_LABELS[self.params.scoring]


class Retainability(_ProtocolMetric):
    """Survey Eq. 10 at each checkpoint of the sequential protocol."""

    name = "retainability"
    description = ("Mean change of accuracy per sequential edit step, survey Eq. 10 (sequential protocol, "
                   "checkpoints only); 0 = nothing lost, negative = earlier edits forgotten")
    scoring_prefix = "accuracy-change/"
    scoring = scoring_prefix + SCORING_LABELS["argmax"]
    protocols = ("sequential",)
    equation = "survey Eq. 10"

    def _first_step(self, model: "EditedModel", first: list["EditRequest"], context: "EvalContext") -> float | None:
        cache = context.cache.setdefault(self.name, {})
        key = _editors_signature(context, self.params.scoring) + "|" + json.dumps([str(r.case_id) for r in first])
        if key not in cache:
            accs = apply_alone(model, first, context, self.params.scoring)
            cache[key] = None if accs is None else sum(accs) / len(accs)
        return cache[key]

    def compute(self, model: "EditedModel", requests: list["EditRequest"],
                context: "EvalContext") -> list[float | None]:
        protocol = context.protocol
        sequential = protocol is None or getattr(protocol, "mode", "sequential") == "sequential"
        if context.phase not in ("checkpoint", "final") or not sequential or not requests:
            return [None] * len(requests)
        k = max(1, int(getattr(protocol, "batch_size", 1) or 1))
        n = context.num_edits or len(requests)
        steps = math.ceil(n / k)
        if steps < 2:
            self.record(context, {"steps": steps}, {"reason": "Eq. 10 needs at least two steps"})
            return [None] * len(requests)
        applied = context.applied or requests
        acc1 = self._first_step(model, list(applied[:k]), context)
        if acc1 is None:
            self.record(context, {"steps": steps}, {"reason": "the first step failed when applied alone"})
            return [None] * len(requests)
        now = accuracies(model, requests, self.params.scoring, eval_batch_size(context))
        acc_s = sum(now) / len(now)
        self.record(context, {"steps": steps, "requests": len(requests)},
                    {"acc_first_step": acc1, "acc_now": acc_s, "step_size": k,
                     "retainability": (acc_s - acc1) / (steps - 1)})
        return [(a - acc1) / (steps - 1) for a in now]


class ScalabilityParams(ProtocolParams):
    sample_size: int = Field(100, ge=1)


class Scalability(_ProtocolMetric):
    """Survey Eq. 11: E_e Acc(M(f; e)) - Acc(M(f; E)) over a sample of the evaluated edits."""

    Params = ScalabilityParams
    name = "scalability"
    description = ("Accuracy lost by editing together: single-edit accuracy minus accuracy with all edits "
                   "applied (survey Eq. 11), on a seeded sample (sample_size); lower is better")
    scoring_prefix = "accuracy-gap/"
    scoring = scoring_prefix + SCORING_LABELS["argmax"]
    higher_is_better = False
    equation = "survey Eq. 11"
    relative = False

    def _store(self, context: "EvalContext") -> dict[str, Any]:
        # Shared by scalability and scalability_relative: a single edit is applied once per run.
        return context.cache.setdefault("scalability", {})

    def _singles(self, model: "EditedModel", ids: list[str], by_id: dict[str, "EditRequest"],
                 context: "EvalContext") -> dict[str, float | None]:
        store = self._store(context).setdefault("single_edit_accuracy", {})
        singles = store.setdefault(_editors_signature(context, self.params.scoring), {})
        for cid in ids:
            if cid not in singles:
                accs = apply_alone(model, [by_id[cid]], context, self.params.scoring)
                singles[cid] = None if accs is None else accs[0]
        return singles

    def _sample(self, ids: list[str], context: "EvalContext", population: bool = False) -> tuple[set[str], int]:
        """The sampled ids among ``ids`` and the size of the population they were drawn from.

        ``prepare`` draws the run's sample over every request (``population=True``) and keeps
        it; a later call uses it when its requests belong to that population, otherwise it
        draws over its own requests."""
        store = self._store(context).setdefault("samples", {})
        key = f"{context.seed}:{self.params.sample_size}"
        if population:
            store[key] = {"population": list(dict.fromkeys(ids)),
                          "sample": sample_ids(ids, self.params.sample_size, context.seed)}
        saved = store.get(key)
        if saved is not None and set(ids) <= set(saved["population"]):
            return set(saved["sample"]), len(saved["population"])
        return set(sample_ids(ids, self.params.sample_size, context.seed)), len(set(ids))

    def prepare(self, model: "EditedModel", requests: list["EditRequest"], context: "EvalContext") -> None:
        if not context.editors:
            return
        ids = [str(r.case_id) for r in requests]
        chosen, _ = self._sample(ids, context, population=True)
        self._singles(model, [c for c in dict.fromkeys(ids) if c in chosen],
                      {str(r.case_id): r for r in requests}, context)

    def compute(self, model: "EditedModel", requests: list["EditRequest"],
                context: "EvalContext") -> list[float | None]:
        if context.phase == "baseline" or not requests:
            return [None] * len(requests)
        if not context.editors:
            self.record(context, {"sampled": 0}, {"reason": "no editor configured"})
            return [None] * len(requests)
        ids = [str(r.case_id) for r in requests]
        chosen, population = self._sample(ids, context)
        info = {"sample_size_param": self.params.sample_size, "sample_drawn": len(chosen),
                "population": population}
        idx = [i for i, c in enumerate(ids) if c in chosen]
        if not idx:  # the run's sample holds none of these requests
            self.record(context, {"sampled": 0, "evaluated": len(requests)}, info)
            return [None] * len(requests)
        singles = self._singles(model, [ids[i] for i in idx], {ids[i]: requests[i] for i in idx}, context)
        failed = sum(1 for i in idx if singles[ids[i]] is None)
        idx = [i for i in idx if singles[ids[i]] is not None]
        single_vals = [float(singles[ids[i]]) for i in idx]  # type: ignore[arg-type]
        now = accuracies(model, [requests[i] for i in idx], self.params.scoring, eval_batch_size(context))
        mean_single = sum(single_vals) / len(single_vals) if single_vals else 0.0
        out: list[float | None] = [None] * len(requests)
        for i, s, a in zip(idx, single_vals, now):
            if not self.relative:
                out[i] = s - a
            elif mean_single > 0:
                out[i] = (s - a) / mean_single
        self.record(context, {"sampled": len(idx), "evaluated": len(requests), "single_sum": sum(single_vals),
                              "after_sum": sum(now), "failed_single_edits": failed}, info)
        return out

    def derive(self, c: dict[str, float]) -> dict[str, float | None]:
        if not c.get("sampled"):
            return {}
        ms, ma = c["single_sum"] / c["sampled"], c["after_sum"] / c["sampled"]
        return {"mean_single_edit_accuracy": ms, "mean_accuracy_after_all": ma,
                "pooled_eq11": ms - ma, "pooled_eq12": (ms - ma) / ms if ms > 0 else None}


class ScalabilityRelative(Scalability):
    """Survey Eq. 12: Eq. 11 divided by the mean single-edit accuracy."""

    name = "scalability_relative"
    description = ("Relative accuracy lost by editing together, survey Eq. 12 (Eq. 11 / mean single-edit "
                   "accuracy), on a seeded sample; lower is better")
    scoring_prefix = "relative-accuracy-gap/"
    scoring = scoring_prefix + SCORING_LABELS["argmax"]
    equation = "survey Eq. 12"
    relative = True
