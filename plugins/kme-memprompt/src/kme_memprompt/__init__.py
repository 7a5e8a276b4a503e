"""MemPrompt (Madaan et al., EMNLP 2022, "Memory-assisted prompt editing to improve GPT-3 after
deployment"; survey section 5.2.2).

A growing memory of (question, feedback) pairs: corrective feedback a user gave on a question
the model got wrong. A new query retrieves the stored question most similar to it and, when
the similarity passes a threshold, the feedback is placed with the query; the model itself
never changes. Feedback can be listed, added and removed at any time (``kme memprompt``).
"""

from __future__ import annotations

from typing import Any

import kme

from kme_memprompt.editor import MemPromptEditor

__all__ = ["MemPromptEditor"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(MemPromptEditor)


@kme.hookimpl
def kme_register_commands(cli: Any) -> None:
    from kme_memlib.textmemory import memory_command

    cli.add_command(memory_command(
        "memprompt", MemPromptEditor.fields,
        "MemPrompt feedback stored in a patch folder: list, add or remove items (no retraining)."))
