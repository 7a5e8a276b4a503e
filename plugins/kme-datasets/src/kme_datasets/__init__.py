"""kme plugin: the knowledge-editing benchmarks of the survey (Table 3), read from their
published files (or the hub) and turned into :class:`kme.EditRequest` objects.

Registered datasets: counterfact, mcf, zsre, mquake, knowedit, trex, pararel, ecbd,
nq-situatedqa, hallucination, wikigen, fever, vitaminc, convsent, scotus, bias-in-bios, mmedit,
pep3k, 20q, crows-pairs.
Loader modules import only the kernel, pydantic and the standard library; Parquet, the hub
and tokenizers are imported when a file needs them.
"""

from __future__ import annotations

import kme

from kme_datasets.classification import FEVER, SCOTUS, BiasInBios, ConvSent, VitaminC
from kme_datasets.commonsense import PEP3k, TwentyQuestions
from kme_datasets.counterfact import CounterFact, MultiCounterFact
from kme_datasets.crows import CrowSPairs
from kme_datasets.ecbd import ECBD
from kme_datasets.hallucination import Hallucination
from kme_datasets.knowedit import KnowEdit
from kme_datasets.lama import ParaRel, TRex
from kme_datasets.mmedit import MMEdit
from kme_datasets.mquake import MQuAKE
from kme_datasets.situatedqa import NQSituatedQA
from kme_datasets.wikigen import WikiGen
from kme_datasets.zsre import ZsRE

__all__ = ["DATASETS", "kme_register_datasets"]

DATASETS = (CounterFact, MultiCounterFact, ZsRE, MQuAKE, KnowEdit, TRex, ParaRel, ECBD, NQSituatedQA,
            Hallucination, WikiGen, FEVER, VitaminC, ConvSent, SCOTUS, BiasInBios, MMEdit, PEP3k,
            TwentyQuestions, CrowSPairs)


@kme.hookimpl
def kme_register_datasets(register) -> None:
    for cls in DATASETS:
        register(cls)
