"""Knowledge attribution by integrated gradients (Dai et al., 2022, §3.1–3.2).

The attribution and Dai et al.'s selection live in the family library
(:mod:`kme_editlib.neurons`), shared with other neuron-level methods; this module keeps the
names importable from ``kme_kn``.
"""

from __future__ import annotations

from kme_editlib.neurons import Neuron, attribute, knowledge_neurons

__all__ = ["attribute", "knowledge_neurons", "Neuron"]
