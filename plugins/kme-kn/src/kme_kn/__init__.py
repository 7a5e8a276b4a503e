"""Knowledge neurons (Dai et al., 2022, "Knowledge Neurons in Pretrained Transformers";
survey §5.4.2).

- locator ``knowledge-neurons``: integrated-gradients attribution of every FFN intermediate
  neuron to the fact's probability, thresholded and refined across prompts
  (:mod:`kme_kn.attribution`);
- editor ``kn``: rewrite the located neurons' value slots, ``v_i ← v_i − λ₁·E(o) + λ₂·E(o*)``
  (:mod:`kme_kn.editor`).
"""

from __future__ import annotations

from typing import Any

import kme

__all__ = ["kme_register_editors", "kme_register_locators"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    from kme_kn.editor import KNEditor

    register(KNEditor)


@kme.hookimpl
def kme_register_locators(register: Any) -> None:
    from kme_kn.locator import KnowledgeNeuronsLocator

    register(KnowledgeNeuronsLocator)
