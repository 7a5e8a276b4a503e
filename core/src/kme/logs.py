"""Structured logging (structlog): JSON lines into the run folder, warnings to the console."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}


class _TeeLogger:
    """Writes every event as JSON to ``file`` and events at ``console_level`` or above to stderr."""

    def __init__(self, file: TextIO | None, console_level: int):
        self.file = file
        self.console_level = console_level

    def msg(self, **event: Any) -> None:
        if self.file is not None:
            self.file.write(json.dumps(event, default=str) + "\n")
            self.file.flush()
        if _LEVELS.get(event.get("level", "info"), 20) >= self.console_level:
            extras = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "level", "timestamp"))
            print(f"[{event.get('level', 'info')}] {event.get('event')} {extras}".rstrip(), file=sys.stderr)

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
