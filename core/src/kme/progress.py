"""Whether progress bars are shown, one switch for the kernel and every plugin.

``kme run --no-progress`` (or ``run_pipeline(progress=False)``) turns progress bars off for
the duration of the run, including those that plugins draw (target-vector optimisation,
statistics collection, training loops). Plugins ask :func:`progress_enabled` instead of
deciding on their own, so a user's choice reaches every bar. ``KME_NO_PROGRESS=1`` turns
them off everywhere, outside pipelines too.

:func:`library_output` makes transformers' and huggingface_hub's own output (the "Loading
weights" bars, download bars, their warnings) follow the same switches: bars off when kme's
bars are off, warnings off under ``-q`` (:func:`kme.logs.quiet`); both restored afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from contextvars import ContextVar
from typing import Iterator

__all__ = ["progress_enabled", "progress", "library_output"]

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


@contextlib.contextmanager
def library_output(*, progress: bool | None = None, quiet: bool | None = None) -> Iterator[None]:
    """Within this block transformers and huggingface_hub draw progress bars only if
    ``progress`` (default: :func:`progress_enabled`) and log warnings only if not ``quiet``
    (default: :func:`kme.logs.is_quiet`); their previous settings are restored afterwards.
    Settings only ever get quieter here: a user's own ``TRANSFORMERS_VERBOSITY=error`` or
    ``HF_HUB_DISABLE_PROGRESS_BARS=1`` stays in force."""
    from kme.logs import is_quiet

    show_bars = progress_enabled() if progress is None else progress
    silent = is_quiet() if quiet is None else quiet
    try:
        from huggingface_hub import utils as hub
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:  # pragma: no cover - transformers needs it
        hub = hub_logging = None  # type: ignore[assignment]
    try:
        from transformers.utils import logging as tf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        tf_logging = None  # type: ignore[assignment]
    undo: list = []
    try:
        if silent:
            for lib in (tf_logging, hub_logging):
                if lib is not None and lib.get_verbosity() < logging.ERROR:
                    undo.append((lambda lib=lib, v=lib.get_verbosity(): lib.set_verbosity(v)))
                    lib.set_verbosity(logging.ERROR)
        if not show_bars:
            if hub is not None:  # undone last: transformers' enable_progress_bar also turns the hub's on
                hub_was_on = not hub.are_progress_bars_disabled()
                hub.disable_progress_bars()
                undo.append(_quietly(hub.enable_progress_bars if hub_was_on else hub.disable_progress_bars))
            if tf_logging is not None and tf_logging.is_progress_bar_enabled():
                tf_logging.disable_progress_bar()
                undo.append(_quietly(tf_logging.enable_progress_bar))
        yield
    finally:
        for fn in reversed(undo):
            fn()


def _quietly(fn):  # type: ignore[no-untyped-def]
    """``fn`` with the warning huggingface_hub gives when its env var keeps bars off."""
    def call() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    return call
