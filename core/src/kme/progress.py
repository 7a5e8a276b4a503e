"""Whether progress bars are shown, one switch for the kernel and every plugin.

``kme run --no-progress`` (or ``run_pipeline(progress=False)``) turns progress bars off for
the duration of the run, including those that plugins draw (target-vector optimisation,
statistics collection, training loops). Plugins ask :func:`progress_enabled` instead of
deciding on their own, so a user's choice reaches every bar. ``KME_NO_PROGRESS=1`` turns
them off everywhere, outside pipelines too.
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar
from typing import Iterator

__all__ = ["progress_enabled", "progress"]

_ENABLED: ContextVar[bool] = ContextVar("kme_progress", default=True)


def progress_enabled(requested: bool = True) -> bool:
    """True when a progress bar the caller ``requested`` should be drawn: the caller asked
    for it, no enclosing run turned bars off, and ``KME_NO_PROGRESS`` is not set."""
    if not requested or not _ENABLED.get():
        return False
    return os.environ.get("KME_NO_PROGRESS", "").strip().lower() in ("", "0", "false", "no")


@contextlib.contextmanager
def progress(enabled: bool) -> Iterator[None]:
    """Within this block, bars are shown only if ``enabled`` (and the enclosing setting allows)."""
    token = _ENABLED.set(_ENABLED.get() and enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)
