"""Structured logging (structlog): JSON lines into the run folder, warnings to the console.

The console gets warnings (``verbose``: info too; inside :func:`quiet`: errors only) on
stderr; library code never writes to stdout, which belongs to the CLI's results.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, TextIO

import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}

_QUIET: ContextVar[bool] = ContextVar("kme_quiet", default=False)


def is_quiet() -> bool:
    """True inside a :func:`quiet` block (``kme run -q`` / ``kme edit -q``)."""
    return _QUIET.get()


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Within this block the console shows errors only (the log file still gets every event),
    and :func:`kme.progress.library_output` silences transformers' warnings."""
    token = _QUIET.set(_QUIET.get() or enabled)
    try:
        yield
    finally:
        _QUIET.reset(token)


class _TeeLogger:
    """Writes every event as JSON to ``file`` and events at ``console_level`` or above to stderr."""

    def __init__(self, file: TextIO | None, console_level: int):
        self.file = file
        self.console_level = console_level

    def msg(self, **event: Any) -> None:
        if self.file is not None:
            self.file.write(json.dumps(event, default=str) + "\n")
            self.file.flush()
        level = max(self.console_level, 40 if _QUIET.get() else 0)
        if _LEVELS.get(event.get("level", "info"), 20) >= level:
            extras = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "level", "timestamp"))
            sys.stderr.write(f"[{event.get('level', 'info')}] {event.get('event')} {extras}".rstrip() + "\n")

    log = debug = info = warning = warn = error = critical = exception = msg


class _Factory:
    def __init__(self) -> None:
        self.file: TextIO | None = None
        self.console_level = 30

    def __call__(self, *args: Any) -> _TeeLogger:
        return _TeeLogger(self.file, self.console_level)


_factory = _Factory()


def _passthrough(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    return event


def configure_logging(log_file: str | Path | None = None, *, verbose: bool = False) -> None:
    """Send kme's structured events to ``log_file`` (JSON lines, appended) and the console."""
    if _factory.file is not None:
        _factory.file.close()
        _factory.file = None
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        _factory.file = open(log_file, "a")
    _factory.console_level = 20 if verbose else 30
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _passthrough,
        ],
        logger_factory=_factory,
        cache_logger_on_first_use=False,
    )


def close_logging() -> None:
    if _factory.file is not None:
        _factory.file.close()
        _factory.file = None


def now() -> float:
    return time.perf_counter()
