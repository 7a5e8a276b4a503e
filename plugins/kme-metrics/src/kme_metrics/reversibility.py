"""``reversibility``: does the edit hold in the reverse direction (Ma et al., 2023, BAKE)?

After "The capital of France is" → London, the reverse question "London is the capital of"
should be answered with the edited subject, France. The questions are a request's
``portability`` entries of ``kind: reverse`` (``target_new``: the edited subject,
``target_true``: the answer before the edit); per request the value is the mean over them,
``None`` for a request without one.

Scoring: ``argmax`` (default; the subject is the teacher-forced top-1 answer), ``token`` or
``exact`` as for the accuracy metrics, or ``comparison``: the paper's reverse-QA score (RQS),
1 when the edited subject is more probable than ``target_true`` (mean per-token
log-probability, as CounterFact's scores); questions without ``target_true`` are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from kme import Params

from kme_metrics.base import KmeMetric, eval_batch_size, mean_or_none, probe_means, regroup, request_counters
from kme_metrics.counterfact import compare
from kme_metrics.judging import SCORING_LABELS, Question, judge

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest, EditedModel, EvalContext

__all__ = ["Reversibility", "reverse_questions"]


def reverse_questions(r: "EditRequest") -> list:
    """The request's ``kind: reverse`` portability questions."""
    return [q for q in r.portability if q.kind == "reverse"]


class ReversibilityParams(Params):
    scoring: Literal["argmax", "token", "exact", "comparison"] = "argmax"
    length_normalize: bool = True


class Reversibility(KmeMetric):
    """Reverse-direction success of the edit: the reverse question names the edited subject."""

    Params = ReversibilityParams
    name = "reversibility"
    description = ("Reverse-direction success (BAKE): '<new object> is the capital of' answers the edited subject; "
                   "kind: reverse portability questions; scoring: argmax (default) | token | exact | comparison "
                   "(the paper's RQS: subject more probable than target_true)")
    scoring = SCORING_LABELS["argmax"]
    equation = "Ma et al. 2023 (BAKE) reversibility; comparison = reverse-QA score (RQS)"

    def scoring_label(self) -> str:
        mode = self.params.scoring
        if mode != "comparison":
            return SCORING_LABELS[mode]
        return "probability-comparison" + ("" if self.params.length_normalize else "/sequence-logprob")

    def _items(self, r: "EditRequest") -> list:
        qs = reverse_questions(r)
        if self.params.scoring == "comparison":
            return [(q.prompt, q.target_new, q.target_true) for q in qs if q.target_true]
        return [Question(q.prompt, (q.target_new, *q.aliases)) for q in qs]

    def compute(self, model: "EditedModel", requests: list["EditRequest"],
                context: "EvalContext") -> list[float | None]:
        per = [self._items(r) for r in requests]
        flat = [q for qs in per for q in qs]
        bs = eval_batch_size(context)
        if self.params.scoring == "comparison":
            pairs = compare(model, flat, length_normalize=self.params.length_normalize, batch_size=bs)
            scores = [float(a > b) for a, b in pairs]
        else:
            scores = judge(model, flat, self.params.scoring, batch_size=bs) if flat else []  # type: ignore[arg-type]
        out = [mean_or_none(vals) for vals in regroup(scores, map(len, per))]
        self.record(context, {**request_counters(out), "probes": len(flat), "probes_sum": sum(scores)})
        return out

    def derive(self, c: dict[str, float]) -> dict[str, float | None]:
        return probe_means(c)
