"""IKE: in-context knowledge editing (Zheng et al., EMNLP 2023, "Can We Edit Factual Knowledge
by In-Context Learning?"; survey section 5.2.2, Eq. 15).

The model is not changed: each new fact is stored with k demonstrations (copy, update,
retain) retrieved by similarity from requests that are not being evaluated, and at inference
the stored fact nearest to the query is placed before it with its demonstrations.

Retrieval (TF-IDF, the model's own hidden states, or a sentence-embedding model) and the
shared edit memory come from the memory-editor library :mod:`kme_memlib`.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_ike.editor import IKEEditor

__all__ = ["IKEEditor"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(IKEEditor)
