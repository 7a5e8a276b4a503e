"""CounterFact's probability-comparison metrics, as ROME and MEMIT report them.

Each probe compares two objects on one prompt: the new object ``o*`` (``target_new``) and the
true one ``o`` (``target_true``; on neighbourhood prompts, the probe's own target). As in the
papers' evaluation code, an object's score is its mean per-token log-probability under teacher
forcing (``length_normalize: true``; ``false`` uses the summed log-probability, i.e. the
probability of the whole object).

- score: 1 when the object that should win is strictly more probable (a tie is a failure).
- magnitude: the difference of the two (per-token geometric-mean) probabilities,
  ``exp(lp_winner) - exp(lp_loser)``.

Efficacy and paraphrase: ``o*`` should win. Neighbourhood: ``o`` should still win over ``o*``.
Per request the value is the mean over its probes; all probes of a call share one batched
``model.score`` call.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from kme import Params

from kme_metrics.base import KmeMetric, eval_batch_size, mean_or_none, probe_means, regroup, request_counters

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest, EditedModel, EvalContext

__all__ = [
    "EfficacyScore", "EfficacyMagnitude", "ParaphraseScore", "ParaphraseMagnitude",
    "NeighborhoodScore", "NeighborhoodMagnitude", "compare",
]


def compare(model: "EditedModel", items: list[tuple[str, str, str]], *, length_normalize: bool = True,
            batch_size: int = 64) -> list[tuple[float, float]]:
    """For each ``(prompt, winner, loser)``: the two objects' log-probabilities (mean per token
    when ``length_normalize``), from one batched ``model.score`` call."""
    if not items:
        return []
    prompts = [p for p, _, _ in items for _ in (0, 1)]
    targets = [t for _, a, b in items for t in (a, b)]
    scores = model.score(prompts, targets, batch_size=batch_size)
    val = (lambda s: s.mean_logprob) if length_normalize else (lambda s: s.logprob)
    return [(val(scores[2 * i]), val(scores[2 * i + 1])) for i in range(len(items))]


class CompareParams(Params):
    length_normalize: bool = True


class _Comparison(KmeMetric):
    """Probes are ``(prompt, should_win, should_lose)``: a probe-set base below picks them
    (:meth:`items`); the statistic is the comparison, or the difference with :class:`_Magnitude`."""

    Params = CompareParams
    scoring = "probability-comparison"
    magnitude = False

    def scoring_label(self) -> str:
        # the papers' per-token mean is the default; say so when whole-sequence log-probs are used
        return type(self).scoring + ("" if self.params.length_normalize else "/sequence-logprob")

    def items(self, r: "EditRequest") -> list[tuple[str, str, str]]:
        raise NotImplementedError

    def statistic(self, lp_win: float, lp_lose: float) -> float:
        if self.magnitude:
            return math.exp(lp_win) - math.exp(lp_lose)
        return float(lp_win > lp_lose)

    def compute(self, model: "EditedModel", requests: list["EditRequest"],
                context: "EvalContext") -> list[float | None]:
        per = [self.items(r) for r in requests]
        flat = [it for its in per for it in its]
        pairs = compare(model, flat, length_normalize=self.params.length_normalize,
                        batch_size=eval_batch_size(context))
        stats = [self.statistic(a, b) for a, b in pairs]
        out = [mean_or_none(vals) for vals in regroup(stats, map(len, per))]
        self.record(context, {
            **request_counters(out),
            "probes": len(flat), "probes_sum": sum(stats),
            "ties": sum(1 for a, b in pairs if a == b),
        })
        return out

    def derive(self, c: dict[str, float]) -> dict[str, float | None]:
        return probe_means(c)


class _Magnitude(_Comparison):
    """The magnitude variant: ``exp(lp_winner) - exp(lp_loser)`` instead of the comparison."""

    scoring = "probability-difference"
    magnitude = True


class _EditProbes(_Comparison):
    def items(self, r: "EditRequest") -> list[tuple[str, str, str]]:
        return [(r.text, r.target_new, r.target_true)] if r.target_true else []


class _ParaphraseProbes(_Comparison):
    def items(self, r: "EditRequest") -> list[tuple[str, str, str]]:
        return [(p, r.target_new, r.target_true) for p in r.paraphrase_prompts] if r.target_true else []


class _NeighborhoodProbes(_Comparison):
    def items(self, r: "EditRequest") -> list[tuple[str, str, str]]:
        # A probe whose expected answer is the new object cannot separate the two: skipped.
        return [(p.prompt, p.target, r.target_new) for p in r.neighborhood
                if p.target.strip() != r.target_new.strip()]


class EfficacyScore(_EditProbes):
    name = "efficacy_score"
    description = "CounterFact ES: P(o*) > P(o) on the edit prompt (probability comparison)"
    equation = "ROME/MEMIT efficacy score (ES)"


class EfficacyMagnitude(_Magnitude, _EditProbes):
    name = "efficacy_magnitude"
    description = "CounterFact EM: P(o*) - P(o) on the edit prompt"
    equation = "ROME/MEMIT efficacy magnitude (EM)"


class ParaphraseScore(_ParaphraseProbes):
    name = "paraphrase_score"
    description = "CounterFact PS: P(o*) > P(o) on paraphrase prompts"
    equation = "ROME/MEMIT paraphrase score (PS)"


class ParaphraseMagnitude(_Magnitude, _ParaphraseProbes):
    name = "paraphrase_magnitude"
    description = "CounterFact PM: P(o*) - P(o) on paraphrase prompts"
    equation = "ROME/MEMIT paraphrase magnitude (PM)"


class NeighborhoodScore(_NeighborhoodProbes):
    name = "neighborhood_score"
    description = "CounterFact NS: P(o) > P(o*) on neighbourhood prompts (o = the probe's target)"
    equation = "ROME/MEMIT neighborhood score (NS)"


class NeighborhoodMagnitude(_Magnitude, _NeighborhoodProbes):
    name = "neighborhood_magnitude"
    description = "CounterFact NM: P(o) - P(o*) on neighbourhood prompts"
    equation = "ROME/MEMIT neighborhood magnitude (NM)"
