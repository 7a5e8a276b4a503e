"""Language Patch (Murty et al., EMNLP 2022, "Fixing Model Bugs with Natural Language
Patches"; survey section 5.2.2).

A patch is a natural-language rule "if <condition>, then <consequence>". For each query a gate
decides whether a patch's condition holds; if it does, the consequence is given to the model
with the query. Patches are created, listed and removed without retraining
(``kme language-patch``).
"""

from __future__ import annotations

from typing import Any

import kme

from kme_language_patch.editor import LanguagePatchEditor

__all__ = ["LanguagePatchEditor"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(LanguagePatchEditor)


@kme.hookimpl
def kme_register_commands(cli: Any) -> None:
    from kme_memlib.textmemory import memory_command

    cli.add_command(memory_command(
        "language-patch", LanguagePatchEditor.fields,
        "Natural-language patches (condition -> consequence) stored in a patch folder: list, add or remove "
        "them (no retraining)."))
