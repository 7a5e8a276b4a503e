"""An edit's new fact as one sentence, the text memory editors store and retrieve."""

from __future__ import annotations

from kme import join_target

__all__ = ["fact_text"]


def fact_text(prompt: str, target: str) -> str:
    """The new fact as one sentence: the prompt completed by the object."""
    return prompt + join_target(prompt, target)
