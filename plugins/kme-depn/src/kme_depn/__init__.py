"""DEPN (Wu et al., EMNLP 2023, "DEPN: Detecting and Editing Privacy Neurons in Pretrained
Language Models"; cited in the survey's references).

- detection (:mod:`kme_depn.detection`): integrated-gradients attribution of every FFN
  neuron, summed over the private string's tokens, thresholded per text, then the privacy
  neuron aggregator keeps the neurons frequent across the batch's texts;
- editor ``depn`` (:mod:`kme_depn.editor`): deactivate them (zero their value slots).

The ``privacy_leak`` metric (kme-metrics) and the ``factworld-private`` dataset
(kme-factworld) measure it.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_depn.editor import DEPNEditor

__all__ = ["DEPNEditor", "PRESETS", "kme_register_editors", "kme_register_presets"]

#: Settings measured on the shipped fact-world model (README, docs/privacy.md).
PRESETS = [
    kme.Preset(name="depn/factworld", editor="depn", model=kme.ModelMatch(alias="factworld"),
               params={"max_neurons": 50},
               description="DEPN on the fact-world model", reference="docs/privacy.md",
               notes={"max_neurons": "the released code's 10 leave 53% of the private strings leaking at batch 10 "
                                     "(80% at batch 1); a batch of 10 keeps ~23 neurons shared by half its texts"}),
]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(DEPNEditor)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    for preset in PRESETS:
        register(preset)
