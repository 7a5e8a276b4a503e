"""Accuracy-type metrics: is the edited fact (or what follows from it) answered right?

- ``accuracy`` -- survey Eq. 3 on the edit prompt ``x_e``.
- ``generality`` -- survey Eq. 8 per edit (mean over its paraphrases ``X_e``); the details
  hold Eq. 9, pooled over the union of paraphrases of the evaluated edits.
- ``token_accuracy`` -- zsRE-style teacher-forced token accuracy on the edit prompt (ROME,
  MEMIT, EasyEdit's "reliability").
- ``portability`` -- portability questions (EasyEdit / RippleEdits): consequences of the edit,
  answered with ``target_new`` or one of its aliases.
- ``multihop_accuracy`` -- MQuAKE: a case counts as answered when any of its multi-hop
  questions is answered right (``case_rule: any``), the paper's definition.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Literal

from kme import Params

from kme_metrics.base import KmeMetric, eval_batch_size, probe_means, regroup, request_counters
from kme_metrics.judging import SCORING_LABELS, Question, ScoringMode, judge

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest, EditedModel, EvalContext

__all__ = ["Accuracy", "Generality", "TokenAccuracy", "Portability", "MultihopAccuracy", "edit_questions",
           "portability_questions"]


def _choices(r: "EditRequest") -> tuple[str, ...] | None:
    """The request's distinct ``choices`` (``None``: not categorical)."""
    return tuple(dict.fromkeys(r.choices)) if r.choices else None


def edit_questions(r: "EditRequest") -> list[Question]:
    """The edit prompt ``x_e`` with its target ``y*_e`` (categorical when ``choices`` is set)."""
    return [Question(r.text, (r.target_new,), _choices(r))]


def portability_questions(r: "EditRequest", kinds: Collection[str] | None = None) -> list[Question]:
    """The request's portability questions (of ``kinds``; all when ``None``), answered with
    ``target_new`` or one of its aliases."""
    return [Question(q.prompt, (q.target_new, *q.aliases)) for q in r.portability
            if kinds is None or q.kind in kinds]


class ProbeAccuracy(KmeMetric):
    """Judges each request's probes (:meth:`questions`) in the configured scoring mode and
    combines them per request (mean, or ``any`` for MQuAKE cases)."""

    class Params(Params):
        scoring: ScoringMode = "argmax"

    scoring = SCORING_LABELS["argmax"]

    @property
    def mode(self) -> ScoringMode:
        """The scoring mode in use (``params.scoring``)."""
        return self.params.scoring

    def scoring_label(self) -> str:
        return SCORING_LABELS[self.mode]

    def questions(self, r: "EditRequest") -> list[Question]:
        raise NotImplementedError

    def combine(self, values: list[float]) -> float:
        return sum(values) / len(values)

    def compute(self, model: "EditedModel", requests: list["EditRequest"],
                context: "EvalContext") -> list[float | None]:
        per = [self.questions(r) for r in requests]
        flat = [q for qs in per for q in qs]
        scores = judge(model, flat, self.mode, batch_size=eval_batch_size(context)) if flat else []
        out = [self.combine(vals) if vals else None for vals in regroup(scores, map(len, per))]
        unique = dict(zip(((q.prompt, q.answers) for q in flat), scores))
        self.record(context, {
            **request_counters(out),
            "probes": len(flat), "probes_sum": sum(scores),
            "unique_probes": len(unique), "unique_sum": sum(unique.values()),
            "categorical_probes": sum(1 for q in flat if q.choices),
        })
        return out

    def derive(self, c: dict[str, float]) -> dict[str, float | None]:
        return probe_means(c, unique=True)


class Accuracy(ProbeAccuracy):
    """Survey Eq. 3: Acc = E_e 1{f*(x_e) = y*_e}, on each edit's own prompt."""

    name = "accuracy"
    description = ("Edit success on the edit prompt (survey Eq. 3); scoring: argmax (default) | token | exact; "
                   "categorical targets: argmax over choices")
    equation = "survey Eq. 3"

    def questions(self, r: "EditRequest") -> list[Question]:
        return edit_questions(r)


class Generality(ProbeAccuracy):
    """Survey Eq. 8 per edit over its paraphrases; Eq. 9 (pooled) in the details."""

    name = "generality"
    description = ("Success on paraphrases of the edit prompt (survey Eq. 8 per edit, Eq. 9 pooled in details); "
                   "scoring: argmax (default) | token | exact")
    equation = "survey Eq. 8 (per edit); Eq. 9 = details.pooled_over_unique_probes"

    def questions(self, r: "EditRequest") -> list[Question]:
        choices = _choices(r)
        return [Question(p, (r.target_new,), choices) for p in r.paraphrase_prompts]


class TokenAccuracy(ProbeAccuracy):
    """zsRE-style teacher-forced token accuracy on the edit prompt (ROME/MEMIT, EasyEdit)."""

    class Params(Params):
        pass

    name = "token_accuracy"
    description = "Teacher-forced token accuracy of target_new on the edit prompt (zsRE-style)"
    scoring = SCORING_LABELS["token"]
    equation = "ROME/MEMIT zsRE efficacy; EasyEdit reliability"

    @property
    def mode(self) -> ScoringMode:
        return "token"

    def questions(self, r: "EditRequest") -> list[Question]:
        return edit_questions(r)


class PortabilityParams(Params):
    scoring: ScoringMode = "token"
    kinds: list[Literal["portability", "multihop", "reverse", "one-hop", "subject-alias"]] | None = None


class Portability(ProbeAccuracy):
    """Portability questions: the edit's consequences, answered with ``target_new`` or an alias."""

    Params = PortabilityParams
    name = "portability"
    description = ("Success on questions whose answer follows from the edit (EasyEdit/RippleEdits); "
                   "scoring: token (default) | argmax | exact; aliases accepted; kinds filter")
    scoring = SCORING_LABELS["token"]
    equation = "EasyEdit portability (mean over a request's questions)"

    def questions(self, r: "EditRequest") -> list[Question]:
        return portability_questions(r, self.params.kinds)


class MultihopParams(Params):
    scoring: ScoringMode = "exact"
    case_rule: Literal["any", "mean"] = "any"


class MultihopAccuracy(ProbeAccuracy):
    """MQuAKE multi-hop accuracy over a request's ``kind: multihop`` questions."""

    Params = MultihopParams
    name = "multihop_accuracy"
    description = ("MQuAKE multi-hop accuracy: a case is right when any of its multi-hop questions is "
                   "(case_rule: any | mean); scoring: exact (default) | argmax | token; aliases accepted")
    scoring = SCORING_LABELS["exact"]
    equation = "MQuAKE multi-hop accuracy"

    def questions(self, r: "EditRequest") -> list[Question]:
        return portability_questions(r, ("multihop",))

    def combine(self, values: list[float]) -> float:
        if self.params.case_rule == "any":
            return max(values)
        return super().combine(values)

