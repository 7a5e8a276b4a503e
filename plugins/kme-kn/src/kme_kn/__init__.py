"""Knowledge neurons (Dai et al., 2022, "Knowledge Neurons in Pretrained Transformers";
survey §5.4.2).

- locator ``knowledge-neurons``: integrated-gradients attribution of every FFN intermediate
  neuron to the fact's probability, thresholded and refined across prompts
  (:mod:`kme_editlib.neurons`);
- editor ``kn``: rewrite the located neurons' value slots, ``v_i ← v_i − λ₁·E(o) + λ₂·E(o*)``
  (:mod:`kme_kn.editor`).
"""

from __future__ import annotations

from kme_editlib.registration import registration_hook

from kme_kn.editor import KNEditor
from kme_kn.locator import KnowledgeNeuronsLocator

__all__ = ["kme_register_editors", "kme_register_locators"]

kme_register_editors = registration_hook(KNEditor)
kme_register_locators = registration_hook(KnowledgeNeuronsLocator)
