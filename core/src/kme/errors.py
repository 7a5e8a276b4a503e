"""Errors that reach users as one clear message (exit code 2), never a bare traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import ValidationError


class KmeError(Exception):
    """A problem with the user's input or environment, stated with where and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, where: str | None = None):
        self.message = message
        self.hint = hint
        self.where = where
        super().__init__(self.render())

    #: Longest message shown: a record's 50 MB field quoted in full would bury the point.
    max_chars = 2000

    def render(self) -> str:
        message = self.message
        if len(message) > self.max_chars:
            message = message[: self.max_chars] + f"... ({len(message) - self.max_chars:,} more characters)"
        text = f"{self.where}: {message}" if self.where else message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(KmeError):
    """A pipeline file or a component's params do not validate."""


class UnknownComponentError(KmeError):
    """A pipeline names a component no installed plugin registers."""


class DatasetRecordError(KmeError):
    """A dataset record is missing a field or has the wrong type."""


class ModelLoadError(KmeError):
    """A model cannot be loaded or its architecture is not covered by a layout."""


class PatchMismatchError(KmeError):
    """A patch was made for another base model."""


class EditFailedError(KmeError):
    """An edit produced non-finite weights (rolled back) or could not be applied."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "available: " + (", ".join(known) if known else "(none installed)")


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """Render a pydantic error as 'field.path: message' lines, naming each bad field."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        full = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not accepted here)"
        lines.append(f"{full or '<root>'}: {msg}")
    return "; ".join(lines)
