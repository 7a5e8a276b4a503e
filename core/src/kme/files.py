"""Reading the text files kme is given (pipelines, dataset files, patch manifests): one place
that decides what is accepted, so every file fails the same clear way.

- Text is strict UTF-8 (a leading byte-order mark is allowed); anything else is refused with
  the byte offset, not decoded into mojibake.
- YAML is read with the YAML 1.2 core schema: ``yes``/``on`` and ``1:30`` are strings (so an
  int field refuses them) instead of YAML 1.1's ``true`` and ``90``; a key given twice is an
  error (YAML's "last one wins" silently drops the first); no tag can construct an object.
- Nesting deeper than :data:`MAX_DEPTH` is refused (a recursive parser, validator or writer
  would otherwise overflow the stack on ``[[[[...``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from kme.errors import ConfigError, KmeError

__all__ = ["read_text", "read_json", "parse_json", "parse_yaml", "check_depth", "depth_error", "decode_utf8", "MAX_DEPTH",
           "StrictYamlLoader"]

#: Deepest nesting of lists/mappings accepted in YAML or JSON (kme's own files use < 10).
MAX_DEPTH = 100
#: Most values a YAML document may expand to once its aliases are resolved.
MAX_YAML_NODES = 100_000


def read_text(path: str | Path, *, what: str = "file", error: type[KmeError] = ConfigError,
              where: str | None = None) -> str:
    """The text of ``path``, decoded as strict UTF-8; a missing, unreadable or non-UTF-8 file
    raises ``error`` naming the file (``where`` overrides the location shown)."""
    p = Path(path)
    label = where or str(p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {str(p)!r} does not exist", where=where) from None
    except IsADirectoryError:
        raise error(f"{what} {str(p)!r} is a directory, not a file", where=where) from None
    except OSError as e:
        raise error(f"cannot read {what} {str(p)!r}: {e.strerror or e}", where=where) from None
    return decode_utf8(data, label, what=what, error=error)


def decode_utf8(data: bytes, label: str, *, what: str = "file", error: type[KmeError] = ConfigError) -> str:
    """``data`` as strict UTF-8 text (BOM stripped), else ``error`` saying where it breaks."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        guess = ""
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            guess = " (it looks like UTF-16)"
        elif b"\x00" in data[:1024]:
            guess = " (it looks like a binary file)"
        raise error(f"{what} is not UTF-8 text{guess}: byte {e.start} (0x{data[e.start]:02x}) cannot be decoded",
                    where=label, hint="save the file as UTF-8") from None


def depth_error(source: str, error: type[KmeError] = ConfigError) -> KmeError:
    return error(f"lists/mappings nested more than {MAX_DEPTH} levels deep", where=source,
                 hint="kme's files are a few levels deep; check that this is the file you meant")


def check_depth(value: Any, source: str, *, error: type[KmeError] = ConfigError) -> Any:
    """``value`` if its lists/mappings nest at most :data:`MAX_DEPTH` deep (checked without
    recursion), else ``error``."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            if d >= MAX_DEPTH:
                raise depth_error(source, error)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return value


def parse_json(text: str, source: str, *, error: type[KmeError] = ConfigError) -> Any:
    """``json.loads`` with nesting bounded and errors that name ``source`` and the position."""
    try:
        return check_depth(json.loads(text), source, error=error)
    except json.JSONDecodeError as e:
        raise error(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", where=source) from None
    except RecursionError:
        raise depth_error(source, error) from None


def read_json(path: str | Path, *, what: str = "JSON file", error: type[KmeError] = ConfigError) -> Any:
    """Read and parse a UTF-8 JSON file; every failure names the file."""
    return parse_json(read_text(path, what=what, error=error), str(path), error=error)


class StrictYamlLoader(yaml.SafeLoader):
    """Safe YAML with the 1.2 core schema's scalars, duplicate keys refused, no object tags."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, "a key must be a plain value, not a "
                        "list or mapping", key_node.start_mark) from None
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"key {key!r} is given twice (first at line {seen[key].start_mark.line + 1})",
                        key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as e:  # e.g. `!!int 'abc'` (ValueError), `!!bool maybe` (KeyError)
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.tag.replace('tag:yaml.org,2002:', '!!')} value {getattr(node, 'value', '')!r}: {e}"[:300],
                node.start_mark) from None


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1023-core-schema)
StrictYamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                       list("tTfF"))
StrictYamlLoader.add_implicit_resolver("tag:yaml.org,2002:int",
                                       re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                       list("-+0123456789"))
StrictYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))
StrictYamlLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                                       ["~", "n", "N", ""])


def _construct_int(loader: StrictYamlLoader, node: yaml.ScalarNode) -> int:
    value = str(loader.construct_scalar(node))
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value, 10)  # a leading 0 is decimal (YAML 1.2), not octal


StrictYamlLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` with :class:`StrictYamlLoader`; errors name ``source``, the line and
    the column."""
    try:
        data = yaml.load(text, Loader=StrictYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"malformed YAML{at}: {problem}", where=source) from None
    except RecursionError:
        raise depth_error(source) from None
    _measure(data, 0, {}, source)
    return data


def _measure(v: Any, depth: int, memo: dict[int, tuple[int, int]], source: str) -> tuple[int, int]:
    """(expanded size, height) of a parsed YAML value. Anchors and aliases share objects, so a
    few lines can stand for billions of nodes ("alias bomb"): both are bounded. Recursion is
    safe here because depth is capped at :data:`MAX_DEPTH`."""
    if not isinstance(v, (dict, list)):
        return 1, 0
    if depth >= MAX_DEPTH:
        raise depth_error(source)
    if id(v) in memo:
        size, height = memo[id(v)]
        if depth + height >= MAX_DEPTH:
            raise depth_error(source)
        return size, height
    size, height = 1, 0
    for x in (v.values() if isinstance(v, dict) else v):
        s, h = _measure(x, depth + 1, memo, source)
        size, height = size + s, max(height, h + 1)
        if size > MAX_YAML_NODES:
            raise ConfigError(f"expands to more than {MAX_YAML_NODES:,} values (anchors/aliases repeated "
                              "inside each other)", where=source, hint="write the values out, or use fewer aliases")
    memo[id(v)] = (size, height)
    return size, height

