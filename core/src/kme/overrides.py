"""Dotted overrides of a pipeline mapping: ``editors.0.params.v_lr=0.5``, ``dataset.limit=20``.

Overrides are applied to the raw pipeline mapping (as read from YAML) before it is validated,
so an overridden pipeline is checked by the same schema, with the same messages, as a file
that says the same thing; a message about an overridden field also names the override.

- a key is a dotted path; a number indexes a list (``editors.0``), anything else a mapping;
- a value given as text (``KEY=VALUE``) is parsed as YAML: ``3`` is an int, ``[1, 2]`` a list,
  ``{name: rome}`` a mapping, ``true`` a bool, ``null`` None; a mapping of overrides
  (:func:`apply_overrides` with a dict) takes its values as they are;
- a missing mapping key is created (the schema then decides whether it is allowed); a
  component given by its name alone (``model: factworld``, ``editors: [rome]``) is read as
  ``{name: ...}`` when a path goes through it (``model.dtype=bfloat16``);
- a list index out of range, a path through a scalar and a malformed override are errors
  (exit code 2) naming the override.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from kme.errors import ConfigError, KmeError

if TYPE_CHECKING:  # pragma: no cover
    from kme.pipeline.spec import PipelineSpec

__all__ = ["Override", "apply_overrides", "parse_overrides", "parse_with_overrides", "blame_overrides",
           "load_pipeline_data"]

#: Places where a bare string stands for ``{name: <string>}``: (parent path, is a list item).
_NAMED_TOP = {"model", "dataset", "locator"}
_NAMED_LISTS = {"editors", "metrics"}


@dataclass(frozen=True)
class Override:
    """One override: its dotted ``key`` split into ``path``, its parsed ``value`` and how it
    was written (``label``, for messages)."""

    key: str
    path: tuple[str, ...]
    value: Any
    label: str


def _split(key: str, label: str) -> tuple[str, ...]:
    key = key.strip()
    parts = tuple(p.strip() for p in key.split("."))
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {label!r}: the key must be a dotted path like protocol.batch_size "
                          "or editors.0.params.v_lr", hint="write KEY=VALUE")
    return parts


def _show(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # pragma: no cover - YAML only gives JSON-like values
        return repr(value)


def parse_overrides(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[Override]:
    """``KEY=VALUE`` strings (values parsed as YAML) or a ``{key: value}`` mapping (values
    taken as they are) as :class:`Override` objects, in order."""
    from kme.files import parse_yaml

    out: list[Override] = []
    if not overrides:
        return out
    if isinstance(overrides, Mapping):
        for k, v in overrides.items():
            if not isinstance(k, str):
                raise ConfigError(f"override key {k!r} must be a string (a dotted path)")
            label = f"{k}={_show(v)}"
            out.append(Override(k.strip(), _split(k, label), v, label))
        return out
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} must be KEY=VALUE (e.g. protocol.batch_size=10)")
        k, v = item.split("=", 1)
        path = _split(k, item)
        value = parse_yaml(v, f"override {item!r}") if v.strip() else None
        out.append(Override(k.strip(), path, value, item))
    return out


def _index(seg: str, node: list[Any], ov: Override, at: str) -> int:
    if not re.fullmatch(r"-?\d+", seg):
        raise ConfigError(f"override {ov.label!r}: {at} is a list; index it by number (e.g. {at}.0), not {seg!r}")
    i = int(seg)
    if not 0 <= i < len(node):
        raise ConfigError(f"override {ov.label!r}: index {i} is out of range: {at} has {len(node)} item(s)",
                          hint=f"indices run from 0 to {len(node) - 1}; to add an item, set the whole list "
                               f"({at}=[...])" if node else f"{at} is empty; set the whole list ({at}=[...])")
    return i


def _named(path: tuple[str, ...]) -> bool:
    """Whether a bare string at ``path`` stands for ``{name: <string>}``."""
    return (len(path) == 1 and path[0] in _NAMED_TOP) or (len(path) == 2 and path[0] in _NAMED_LISTS)


def _apply_one(data: dict[str, Any], ov: Override) -> None:
    node: Any = data
    for depth, seg in enumerate(ov.path[:-1]):
        at = ".".join(ov.path[: depth + 1])
        if isinstance(node, list):
            key: Any = _index(seg, node, ov, ".".join(ov.path[:depth]))
        else:
            key = seg
            if key not in node or node[key] is None:
                node[key] = {}
        child = node[key]
        if isinstance(child, str) and _named(ov.path[: depth + 1]):
            child = node[key] = {"name": child}
        if not isinstance(child, (dict, list)):
            raise ConfigError(f"override {ov.label!r}: {at} is {_show(child)} ({type(child).__name__}), not a "
                              f"mapping or list, so it has no {ov.path[depth + 1]!r}",
                              hint=f"set {at} itself ({at}=...)")
        if (depth == 0 and seg == "dataset" and isinstance(child, dict) and len(ov.path) == 2
                and isinstance(child.get("params"), dict) and ov.path[1] in child["params"]):
            child = child["params"]  # dataset.limit where the file has dataset.params.limit
        node = child
    last = ov.path[-1]
    if isinstance(node, list):
        node[_index(last, node, ov, ".".join(ov.path[:-1]))] = copy.deepcopy(ov.value)
    else:
        node[last] = copy.deepcopy(ov.value)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a copy of pipeline mapping ``data`` with ``overrides`` applied in order.

    ``overrides``: ``["editors.0.params.v_lr=0.5", "dataset.limit=20"]`` (values parsed as
    YAML) or ``{"editors.0.params.v_lr": 0.5}`` (values as they are). ``data`` is not changed.
    Raises :class:`~kme.errors.ConfigError` (exit code 2) naming the override for a malformed
    one, a list index out of range or a path through a scalar; whether the result is a valid
    pipeline is for the schema to say (:func:`parse_with_overrides`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"overrides apply to a pipeline mapping, got {type(data).__name__}")
    out = copy.deepcopy(data)
    for ov in parse_overrides(overrides):
        _apply_one(out, ov)
    return out


def _loc_path(where: str | None, source: str) -> tuple[str, ...] | None:
    """``'pipe.yaml: editors[0].params'`` -> ``('editors', '0', 'params')``."""
    if not where or not where.startswith(f"{source}: "):
        return None
    rest = where[len(source) + 2:]
    rest = re.sub(r"\[(\d+)\]", r".\1", rest.split(" ")[0])
    parts = tuple(p for p in rest.split(".") if p)
    return parts or None


def _related(a: Sequence[str], b: Sequence[str]) -> bool:
    n = min(len(a), len(b))
    return n > 0 and tuple(a[:n]) == tuple(b[:n])


def _blamed(path: Sequence[str], ovs: Sequence[Override]) -> list[Override]:
    return [o for o in ovs if _related(o.path, path)]


def _prefix(ovs: Sequence[Override]) -> str:
    return ", ".join(f"override {o.label!r}" for o in ovs) + ": "


def parse_with_overrides(data: Any, overrides: Sequence[str] | Mapping[str, Any] | None,
                         source: str = "<pipeline>") -> "PipelineSpec":
    """Apply ``overrides`` to pipeline mapping ``data`` and validate the result as
    :func:`kme.pipeline.parse_pipeline` does; a schema error about an overridden field names
    the override (``override 'protocol.batch_sise=3': protocol.batch_sise: unknown field``)."""
    from pydantic import ValidationError

    from kme.pipeline.spec import PipelineSpec, parse_pipeline

    ovs = parse_overrides(overrides)
    if not ovs:
        return parse_pipeline(data, source)
    if not isinstance(data, dict):
        return parse_pipeline(data, source)  # the usual "expected a mapping" error
    applied = copy.deepcopy(data)
    for ov in ovs:
        _apply_one(applied, ov)
    try:
        return PipelineSpec.model_validate(applied)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(str(p) for p in err["loc"])
            msg = "unknown field (not accepted here)" if err["type"] == "extra_forbidden" else err["msg"]
            text = f"{'.'.join(loc) or '<root>'}: {msg}"  # as format_validation_error words it
            blamed = _blamed(loc, ovs)
            lines.append((_prefix(blamed) if blamed else "") + text)
        raise ConfigError("; ".join(lines), where=source,
                          hint="see docs/pipeline.md for the pipeline keys") from None


def blame_overrides(err: KmeError, overrides: Sequence[str] | Mapping[str, Any] | None,
                    source: str = "<pipeline>") -> KmeError:
    """``err`` (from :func:`~kme.pipeline.validate_components` or the device check) with the
    override(s) that set the field it names put in front of its message; ``err`` itself if
    none did. A :class:`~kme.pipeline.spec.PipelineErrors` is rewritten error by error."""
    return _blame(err, parse_overrides(overrides), source)


def _blame(err: KmeError, ovs: Sequence[Override], source: str) -> KmeError:
    from kme.pipeline.spec import PipelineErrors

    if not ovs:
        return err
    if isinstance(err, PipelineErrors):
        return PipelineErrors([_blame(e, ovs, source) for e in err.errors], source)
    path = _loc_path(err.where, source)
    blamed = _blamed(path, ovs) if path else []
    if not blamed:
        return err
    try:
        new = type(err)(_prefix(blamed) + err.message, hint=err.hint, where=err.where)
    except TypeError:  # pragma: no cover - a subclass with another constructor
        return err
    return new


def load_pipeline_data(path: str | Path) -> dict[str, Any]:
    """The raw mapping of pipeline file ``path`` (not validated)."""
    from kme.files import parse_yaml, read_text

    p = Path(path)
    if not p.is_file() and not p.is_dir():
        raise ConfigError(f"pipeline file {str(p)!r} does not exist")
    return parse_yaml(read_text(p, what="pipeline file"), str(p))
