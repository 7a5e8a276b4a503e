"""Text corpora for key statistics: the fact world's own text (offline default), a local text
file, or a Hugging Face hub dataset (only when named explicitly; streamed, never downloaded
whole).

Corpus ids:

- ``auto`` / ``factworld``: the shipped fact world's true-fact text (``kme_factworld.corpus``);
- ``file:PATH`` (or an existing path): one record per non-empty line; ``.jsonl`` files take
  each line's ``"text"`` field;
- ``hub:NAME[:CONFIG[:SPLIT]]``, e.g. ``hub:wikitext:wikitext-103-raw-v1`` or
  ``hub:wikipedia:20220301.en`` (the papers' choice): streamed with ``datasets``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kme.errors import ConfigError, KmeError

__all__ = ["Corpus", "resolve_corpus"]


@dataclass
class Corpus:
    """A named, re-iterable source of text records; ``id`` keys the statistics cache."""

    id: str
    records: Callable[[], Iterator[str]]
    description: str = ""


def _digest(parts: Iterator[str], limit: int = 2000) -> str:
    h = hashlib.sha256()
    for i, p in enumerate(parts):
        if i >= limit:
            break
        h.update(p.encode("utf-8", "replace"))
        h.update(b"\n")
    return h.hexdigest()[:12]


@functools.lru_cache(maxsize=2)
def _factworld() -> Corpus:
    try:
        import kme_factworld
    except ImportError:
        raise KmeError("the 'factworld' corpus needs the kme-factworld plugin",
                       hint="pip install kme-factworld, or pass stats_corpus: file:PATH / hub:NAME") from None
    docs = kme_factworld.corpus()
    return Corpus(id=f"factworld-{_digest(iter(docs))}", records=lambda: iter(docs),
                  description=f"fact world text ({len(docs)} documents)")


def _file(path: str) -> Corpus:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"corpus file {str(p)!r} does not exist",
                          hint="pass file:PATH to a text file (one record per line) or a .jsonl with a 'text' field")
    jsonl = p.suffix == ".jsonl"

    def records() -> Iterator[str]:
        with open(p, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                if jsonl:
                    try:
                        text = json.loads(line)["text"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise ConfigError(f"{p}:{n}: expected a JSON object with a 'text' field") from None
                    if text:
                        yield str(text)
                else:
                    yield line

    with open(p, "rb") as f:
        digest = hashlib.sha256(f.read(1 << 22)).hexdigest()[:12]
    return Corpus(id=f"file-{p.stem}-{digest}", records=records, description=str(p))


def _hub(spec: str) -> Corpus:
    parts = spec.split(":")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"

    def records() -> Iterator[str]:
        try:
            from datasets import load_dataset
        except ImportError:
            raise KmeError("hub corpora need the 'datasets' package", hint="pip install datasets") from None
        try:
            ds = load_dataset(name, config, split=split, streaming=True)
        except Exception as e:  # network, unknown dataset, offline mode
            raise KmeError(f"could not open hub dataset {name!r} (config {config!r}, split {split!r}): {e}",
                           hint="check the id and your network, or use stats_corpus: factworld / file:PATH") from None
        for row in ds:
            text = row.get("text") if isinstance(row, dict) else None
            if text and text.strip():
                yield text

    slug = "-".join(p for p in (name, config, split) if p).replace("/", "_")
    return Corpus(id=f"hub-{slug}", records=records, description=f"hub dataset {spec}")


def resolve_corpus(spec: str) -> Corpus:
    """The corpus named by ``spec`` (see the module docstring)."""
    if spec in ("auto", "factworld"):
        return _factworld()
    if spec.startswith("file:"):
        return _file(spec[5:])
    if spec.startswith("hub:"):
        if not spec[4:]:
            raise ConfigError("hub corpus without a dataset id", hint="e.g. hub:wikitext:wikitext-103-raw-v1")
        return _hub(spec[4:])
    if Path(spec).expanduser().is_file():
        return _file(spec)
    raise ConfigError(f"unknown statistics corpus {spec!r}",
                      hint="use factworld, file:PATH or hub:NAME[:CONFIG[:SPLIT]] (e.g. hub:wikitext:wikitext-103-raw-v1)")
