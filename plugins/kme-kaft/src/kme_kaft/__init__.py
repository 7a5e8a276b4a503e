"""KAFT: knowledge-aware fine-tuning (Li et al., 2023, "Large Language Models with
Controllable Working Memory").

Continues training a base model on contexts that state a fact, then ask something: when the
question is about the stated fact (often a counterfactual one) the answer is the context's;
when the context is about something else the answer is the model's own memory. Plain fact
text is rehearsed alongside so that recall is kept. ``kme train kaft`` writes a new base model
folder, which a pipeline names as its ``model`` so that in-context editors (IKE, MeLLo,
Language Patch) run on a model that reads its context selectively.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_kaft.editor import KaftTrainer

__all__ = ["KaftTrainer"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(KaftTrainer)
