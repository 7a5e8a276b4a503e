"""kme plugin: the survey's evaluation metrics and the ones published papers report.

Registered metric names (usable in a pipeline's ``metrics:`` list):

- survey section 4: ``accuracy`` (Eq. 3), ``locality`` (Eq. 4-7, as an agreement rate),
  ``generality`` (Eq. 8-9), ``retainability`` (Eq. 10), ``scalability`` (Eq. 11),
  ``scalability_relative`` (Eq. 12);
- CounterFact (ROME/MEMIT): ``efficacy_score``, ``efficacy_magnitude``, ``paraphrase_score``,
  ``paraphrase_magnitude``, ``neighborhood_score``, ``neighborhood_magnitude``, ``fluency``
  (generation entropy), ``consistency`` (reference score);
- zsRE / EasyEdit / MQuAKE: ``token_accuracy``, ``portability``, ``multihop_accuracy``.
- BAKE (BIRD): ``reversibility`` (the edit answered in the reverse direction).
- privacy editing (DEPN): ``privacy_leak`` (leak rate of private strings, lower is better).
- debiasing (PCGU, StereoSet/CrowS style): ``contrastive_gap`` (preference for a pair's advantaged
  completion, lower is better).

docs/metrics.md gives every formula, scoring mode, direction and phase behaviour.
"""

from __future__ import annotations

from typing import Any

import kme

__all__ = ["METRICS", "kme_register_metrics"]


def _metric_classes() -> list[type]:
    from kme_metrics.accuracy import Accuracy, Generality, MultihopAccuracy, Portability, TokenAccuracy
    from kme_metrics.contrastive import ContrastiveGap
    from kme_metrics.counterfact import (EfficacyMagnitude, EfficacyScore, NeighborhoodMagnitude,
                                         NeighborhoodScore, ParaphraseMagnitude, ParaphraseScore)
    from kme_metrics.generation import Consistency, Fluency
    from kme_metrics.locality import Locality
    from kme_metrics.privacy import PrivacyLeak
    from kme_metrics.protocol import Retainability, Scalability, ScalabilityRelative
    from kme_metrics.reversibility import Reversibility

    return [Accuracy, Locality, Generality, Retainability, Scalability, ScalabilityRelative,
            EfficacyScore, EfficacyMagnitude, ParaphraseScore, ParaphraseMagnitude, NeighborhoodScore,
            NeighborhoodMagnitude, Fluency, Consistency, Portability, MultihopAccuracy, TokenAccuracy, PrivacyLeak,
            ContrastiveGap, Reversibility]


METRICS = ("accuracy", "locality", "generality", "retainability", "scalability", "scalability_relative",
           "efficacy_score", "efficacy_magnitude", "paraphrase_score", "paraphrase_magnitude",
           "neighborhood_score", "neighborhood_magnitude", "fluency", "consistency", "portability",
           "multihop_accuracy", "token_accuracy", "privacy_leak", "contrastive_gap",
           "reversibility")
"""The registered names, in the order ``kme plugins`` lists them."""


@kme.hookimpl
def kme_register_metrics(register: Any) -> None:
    for cls in _metric_classes():
        register(cls)
