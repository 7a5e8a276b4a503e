"""The contrastive gap: how strongly the model prefers a pair's advantaged completion.

Debiasing benchmarks score contrastive pairs -- one context, an advantaged (stereotypical)
and a disadvantaged completion: StereoSet's and CrowS-Pairs' bias score is the share of pairs
where the model gives the advantaged one the higher likelihood (ideal 50%), and PCGU (Yu et
al., 2023) reports those. A request is a pair: ``target_true`` is the advantaged completion,
``target_new`` the disadvantaged one (as ``factworld-contrastive`` builds them).

Per probe, with ``lp`` each completion's mean per-token log-probability (``length_normalize``;
``false``: summed):

* ``gap`` (default): ``lp(advantaged) − lp(disadvantaged)``; 0 is parity, negative a flip;
* ``abs_gap``: ``|gap|``, distance from parity whichever way;
* ``prefers_advantaged``: 1 when the advantaged completion is strictly more likely (the
  StereoSet/CrowS score per pair; 0.5 over many pairs is parity).

Lower is better for all three while the model still prefers the advantaged side; details
carry all three pooled, and ``parity_distance`` = ``|prefers_advantaged − 0.5|``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from kme import Params

from kme_metrics.base import KmeMetric, eval_batch_size, mean_or_none, regroup, request_counters
from kme_metrics.counterfact import compare

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest, EditedModel, EvalContext

__all__ = ["ContrastiveGap"]


class ContrastiveGapParams(Params):
    statistic: Literal["gap", "abs_gap", "prefers_advantaged"] = "gap"
    length_normalize: bool = True
    prompts: Literal["edit", "paraphrases", "both"] = "edit"


class ContrastiveGap(KmeMetric):
    """Preference for the advantaged completion of contrastive pairs (StereoSet/CrowS style)."""

    Params = ContrastiveGapParams
    name = "contrastive_gap"
    description = ("log-probability gap advantaged (target_true) minus disadvantaged (target_new) completion of a "
                   "contrastive pair; statistic: gap | abs_gap | prefers_advantaged (StereoSet/CrowS bias score); "
                   "lower is better, parity is 0 (0.5 for prefers_advantaged)")
    scoring = "contrastive-logprob-gap"
    higher_is_better = False
    equation = "StereoSet / CrowS-Pairs bias score (prefers_advantaged), as PCGU (Yu et al., 2023) reports"

    def scoring_label(self) -> str:
        p = self.params
        return f"contrastive-{p.statistic}" + ("" if p.length_normalize else "/sequence-logprob")

    def _prompts(self, r: "EditRequest") -> list[str]:
        if not r.target_true or r.target_true.strip() == r.target_new.strip():
            return []
        which = self.params.prompts
        return ([r.text] if which in ("edit", "both") else []) + \
            (list(r.paraphrase_prompts) if which in ("paraphrases", "both") else [])

    def compute(self, model: "EditedModel", requests: list["EditRequest"],
                context: "EvalContext") -> list[float | None]:
        per = [[(p, r.target_true, r.target_new) for p in self._prompts(r)] for r in requests]
        flat = [it for its in per for it in its]
        pairs = compare(model, flat, length_normalize=self.params.length_normalize,  # type: ignore[arg-type]
                        batch_size=eval_batch_size(context))
        gaps = [a - b for a, b in pairs]
        stat = {"gap": lambda g: g, "abs_gap": abs, "prefers_advantaged": lambda g: float(g > 0)}[self.params.statistic]
        out = [mean_or_none([stat(g) for g in gs]) for gs in regroup(gaps, map(len, per))]
        self.record(context, {
            **request_counters(out),
            "probes": len(gaps), "gap_sum": sum(gaps), "abs_gap_sum": sum(abs(g) for g in gaps),
            "prefers_sum": sum(g > 0 for g in gaps), "ties": sum(g == 0 for g in gaps),
        })
        return out

    def derive(self, c: dict[str, float]) -> dict[str, float | None]:
        n = c.get("probes")
        if not n:
            return {"per_edit_mean": None, "mean_gap": None, "mean_abs_gap": None, "prefers_advantaged": None,
                    "parity_distance": None}
        prefers = c["prefers_sum"] / n
        return {"per_edit_mean": c["requests_sum"] / c["requests"] if c.get("requests") else None,
                "mean_gap": c["gap_sum"] / n, "mean_abs_gap": c["abs_gap_sum"] / n,
                "prefers_advantaged": prefers, "parity_distance": abs(prefers - 0.5)}
