"""MeLLo (Zhong et al., EMNLP 2023, "MQuAKE: Assessing Knowledge Editing in Language Models via
Multi-Hop Questions"; survey section 5.2.2).

Edited facts are kept in a memory. A question is decomposed into sub-questions by the
language model; each sub-question gets a tentative answer from the model, the most relevant
edited fact is retrieved, and when it contradicts the tentative answer the answer is revised
before the next hop. The base model is never changed.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_mello.editor import MelloEditor

__all__ = ["MelloEditor"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(MelloEditor)


@kme.hookimpl
def kme_register_commands(cli: Any) -> None:
    from kme_mello.cli import mello

    cli.add_command(mello)
