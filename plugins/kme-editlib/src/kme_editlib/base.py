"""Running on the unedited base model: statistics and context prefixes belong to the model a
cache is keyed by (its base fingerprint), not to whatever edits are applied at the moment."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["base_weights"]


@contextlib.contextmanager
def base_weights(model: "EditedModel") -> Iterator[None]:
    """Run the block on the unedited weights (exact), whether or not edits are applied.

    Uses ``EditedModel.suspended()``; when the model is already suspended (a metric applying
    one edit alone) or nothing is applied, the weights already are the base weights.
    """
    if not model.stack or getattr(model, "_hidden", None):
        yield
        return
    with model.suspended():
        yield
