"""GRACE: General Retrieval Adaptors for Continual Editing (Hartvigsen et al., NeurIPS 2023,
"Aging with GRACE: Lifelong Model Editing with Discrete Key-Value Adaptors"; survey section
5.2.3).

A codebook of (key, value, deferral radius, label) entries wraps one layer of the model. A
token whose activation entering that layer lies within an entry's radius of the entry's key
gets the entry's value as the layer's output; every other token passes through unchanged.
Edits add entries, or expand or split existing ones, so that edits accumulate over a
lifetime of sequential edits while the base weights never change.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_grace.editor import GraceEditor

__all__ = ["GraceEditor"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(GraceEditor)
