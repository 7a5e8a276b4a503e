"""SERAC: Semi-parametric Editing with a Retrieval-Augmented Counterfactual model (Mitchell et
al., ICML 2022, "Memory-Based Model Editing at Scale"; survey section 5.2.2, Eq. 14).

Edits are stored in a cache. A trained scope classifier decides, for each query, whether it
falls in the scope of a cached edit; if it does, a trained counterfactual model answers it
given that edit, otherwise the base model answers. ``kme train serac`` (alias
``kme serac train``) trains both on a dataset's train split and writes the checkpoint the
``serac`` editor loads; it is bound to the base model it was trained from.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_serac.editor import SeracEditor

__all__ = ["SeracEditor"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(SeracEditor)


@kme.hookimpl
def kme_register_commands(cli: Any) -> None:
    from kme_serac.cli import serac

    cli.add_command(serac)
