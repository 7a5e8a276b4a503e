"""Typed access to one source record, so every bad field stops with the file, the record
index and the field's path (``requested_rewrite.target_new.str``) in the message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kme import DatasetRecordError

__all__ = ["Record", "SkipRecord", "type_name"]


class SkipRecord(Exception):
    """Raised by a converter for a well-formed record that cannot become an edit request
    (e.g. a label outside the task, a template whose object slot precedes the subject).
    The dataset's ``on_unusable`` option decides whether this skips the record or stops."""

    def __init__(self, reason: str, field: str | None = None):
        self.reason = reason
        self.field = field
        super().__init__(reason)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number"}.get(type(value), type(value).__name__)


class Record:
    """One record (or a nested object inside it) of a source file.

    ``source`` names the file (or hub id and split), ``index`` the record's position in it,
    ``path`` the field path of this object inside the record ("" at the top level).
    ``hint`` tells the user which published format the dataset expects.
    """

    def __init__(self, data: Any, source: str, index: int | str, path: str = "", hint: str | None = None,
                 strings_are_numbers: bool = False):
        self.data = data
        self.source = source
        self.index = index
        self.path = path
        self.hint = hint
        self.strings_are_numbers = strings_are_numbers  # CSV sources carry every value as text
        if not isinstance(data, dict):
            self._fail(f"must be a JSON object, got {type_name(data)}", None)

    # -- errors ---------------------------------------------------------------------------
    def field_path(self, key: str | int | None) -> str:
        if key is None:
            return self.path or "<record>"
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, problem: str, key: str | int | None) -> None:
        raise DatasetRecordError(
            f"record {self.index}: field {self.field_path(key)!r} {problem}",
            where=self.source, hint=self.hint)

    def error(self, problem: str, key: str | int | None = None) -> DatasetRecordError:
        """An error about ``key`` of this record, for checks the typed getters cannot make."""
        return DatasetRecordError(f"record {self.index}: field {self.field_path(key)!r} {problem}",
                                  where=self.source, hint=self.hint)

    def child(self, data: Any, key: str | int) -> Record:
        return Record(data, self.source, self.index, self.field_path(key), self.hint, self.strings_are_numbers)

    # -- presence -------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def present(self, *keys: str) -> dict[str, Any]:
        """``{key: raw value}`` of those of ``keys`` the record has (see :meth:`has`), in that
        order: optional fields passed through to ``meta`` unchecked."""
        return {k: self.data[k] for k in keys if self.has(k)}

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                self._fail("is missing", key)
            return None
        return self.data[key]

    # -- scalars --------------------------------------------------------------------------
    def str(self, key: str, *, required: bool = True, allow_empty: bool = False) -> str | None:
        v = self._get(key, required)
        if v is None:
            return None
        if not isinstance(v, str):
            self._fail(f"must be a string, got {type_name(v)}", key)
        if not allow_empty and not v.strip():
            self._fail("must be a non-empty string", key)
        return v

    def template(self, key: str) -> str:
        """A prompt template: a non-empty string with exactly one ``{}`` subject slot."""
        v = self.str(key)
        if v.count("{}") != 1:
            self._fail("must contain exactly one '{}' subject slot", key)
        return v

    def int(self, key: str, *, required: bool = True) -> int | None:
        v = self._get(key, required)
        if v is None:
            return None
        if self.strings_are_numbers and isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                return int(v)
            self._fail(f"must be an integer, got {type_name(v)}", key)
        return v

    def id(self, key: str, *, required: bool = True) -> int | str | None:
        """An identifier: integer or non-empty string."""
        v = self._get(key, required)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, str) and not v.strip()):
            self._fail(f"must be an integer or a non-empty string, got {type_name(v)}", key)
        return v

    def id_or_index(self, key: str) -> int | str:
        """The identifier in ``key`` (see :meth:`id`) when the record has one, else the record index."""
        v = self.id(key, required=False)
        return self.index if v is None else v

    # -- containers -----------------------------------------------------------------------
    def obj(self, key: str, *, required: bool = True) -> Record | None:
        v = self._get(key, required)
        if v is None:
            return None
        if not isinstance(v, dict):
            self._fail(f"must be an object, got {type_name(v)}", key)
        return self.child(v, key)

    def list(self, key: str, *, required: bool = True, non_empty: bool = False) -> list[Any] | None:
        v = self._get(key, required)
        if v is None:
            return None
        if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):  # numpy arrays from parquet/pandas
            v = v.tolist()
        if not isinstance(v, list):
            self._fail(f"must be an array, got {type_name(v)}", key)
        if non_empty and not v:
            self._fail("must be a non-empty array", key)
        return v

    def strs(self, key: str, *, required: bool = True, non_empty: bool = False) -> list[str] | None:
        """A list of non-empty strings."""
        v = self.list(key, required=required, non_empty=non_empty)
        if v is None:
            return None
        for i, s in enumerate(v):
            if not isinstance(s, str) or not s.strip():
                self._fail(f"must hold non-empty strings, but item {i} is {type_name(s)} {s!r}"[:200], key)
        return list(v)

    def objs(self, key: str, *, required: bool = True, non_empty: bool = False) -> list[Record] | None:
        """A list of objects, each wrapped so its own fields report their full path."""
        v = self.list(key, required=required, non_empty=non_empty)
        if v is None:
            return None
        path = self.field_path(key)
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                self._fail(f"must hold objects, but item {i} is {type_name(item)}", key)
            out.append(Record(item, self.source, self.index, f"{path}[{i}]", self.hint, self.strings_are_numbers))
        return out

    def answers(self, key: str, *, required: bool = True) -> list[str] | None:
        """An answer with aliases, in any of the shapes the published files use: a string, a
        list of strings (first = answer, rest = aliases) or a list of such lists (KnowEdit)."""
        v = self._get(key, required)
        if v is None:
            return None
        if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
            v = v.tolist()
        flat: list[str] = []
        if isinstance(v, str):
            flat = [v]
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, str):
                    flat.append(item)
                elif isinstance(item, list) and all(isinstance(s, str) for s in item):
                    flat.extend(item)
                else:
                    self._fail(f"must be a string, a list of strings or a list of string lists; "
                               f"item {i} is {type_name(item)}", key)
        else:
            self._fail(f"must be a string or a list of strings, got {type_name(v)}", key)
        flat = [s for s in flat if s.strip()]
        if not flat:
            if required:
                self._fail("holds no non-empty answer", key)
            return None
        seen: dict[str, None] = {}
        for s in flat:
            seen.setdefault(s, None)
        return list(seen)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self.data.items())
