"""Text corpora for key statistics: registered ones, local files, or Hugging Face hub datasets.

Corpus ids (``stats_corpus``):

- ``auto``: the corpus a plugin registered as the default for this model
  (``kme_register_corpora`` with ``models=[...]``; the fact-world plugin does so for its
  model); on any other model ``auto`` is an error that names the choices -- statistics of
  the wrong text silently give wrong edits;
- a registered corpus name, e.g. ``factworld`` (``kme plugins`` lists them);
- ``file:PATH`` (or an existing path): one record per non-empty line; ``.jsonl`` files take
  each line's ``"text"`` field;
- ``hub:NAME[:CONFIG[:SPLIT]]``, e.g. ``hub:wikitext:wikitext-103-raw-v1`` or
  ``hub:wikipedia:20220301.en`` (the papers' choice): streamed with ``datasets``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kme import ConfigError, KmeError

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["Corpus", "resolve_corpus", "corpus_choices"]

HUB_EXAMPLE = "hub:wikitext:wikitext-103-raw-v1"


@dataclass
class Corpus:
    """A named, re-iterable source of text records; ``id`` keys the statistics cache;
    ``size`` is the number of records when known."""

    id: str
    records: Callable[[], Iterator[str]]
    description: str = ""
    size: int | None = None
    countable: bool = True

    def count(self, limit: int) -> int:
        """Records that reading up to ``limit`` of them really gives (``size`` when known).
        A streamed corpus is not read twice to count it: ``limit`` is taken as given."""
        if self.size is not None:
            return min(self.size, limit)
        if not self.countable:
            return limit
        n = 0
        for _ in self.records():
            n += 1
            if n >= limit:
                break
        return n


def _digest(parts: Iterator[str], limit: int = 2000) -> str:
    h = hashlib.sha256()
    for i, p in enumerate(parts):
        if i >= limit:
            break
        h.update(p.encode("utf-8", "replace"))
        h.update(b"\n")
    return h.hexdigest()[:12]


_REGISTERED: dict[tuple[int, str], Corpus] = {}


def _registered(model: "EditedModel", name: str) -> Corpus:
    text_corpus = model.pm.corpora.get(name)
    key = (id(text_corpus), name)
    if key not in _REGISTERED:
        def records() -> Iterator[str]:
            return iter(text_corpus.records())

        _REGISTERED[key] = Corpus(id=f"{name}-{_digest(records())}", records=records,
                                  description=text_corpus.description or name, size=text_corpus.size)
    return _REGISTERED[key]


def _file(path: str) -> Corpus:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"corpus file {str(p)!r} does not exist", where="stats_corpus",
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
                        raise ConfigError(f"{p}:{n}: expected a JSON object with a 'text' field",
                                          where="stats_corpus") from None
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
                           where="stats_corpus",
                           hint="check the id and your network, or use a registered corpus / file:PATH") from None
        for row in ds:
            text = row.get("text") if isinstance(row, dict) else None
            if text and text.strip():
                yield text

    slug = "-".join(p for p in (name, config, split) if p).replace("/", "_")
    return Corpus(id=f"hub-{slug}", records=records, description=f"hub dataset {spec}", countable=False)


def corpus_choices(model: "EditedModel") -> str:
    """The corpora one may name, for error messages."""
    names = ", ".join(model.pm.corpora) or "none registered"
    return f"a registered corpus ({names}), file:PATH or hub:NAME[:CONFIG[:SPLIT]] (e.g. {HUB_EXAMPLE})"


def resolve_corpus(spec: str, model: "EditedModel") -> Corpus:
    """The corpus ``spec`` names for ``model`` (see the module docstring)."""
    from kme import corpus_for

    if spec == "auto":
        found = corpus_for(model.pm, model.identity)
        if found is None:
            raise ConfigError(
                f"'auto' finds no statistics corpus for model {model.identity.describe()}: none is registered "
                "or preset for it", where="stats_corpus",
                hint=f"name the text to compute key statistics on: {corpus_choices(model)}; the papers used "
                     "Wikipedia (hub:wikipedia:20220301.en)")
        return _registered(model, found.name)
    if spec in model.pm.corpora:
        return _registered(model, spec)
    if spec.startswith("file:"):
        return _file(spec[5:])
    if spec.startswith("hub:"):
        if not spec[4:]:
            raise ConfigError("hub corpus without a dataset id", where="stats_corpus", hint=f"e.g. {HUB_EXAMPLE}")
        return _hub(spec[4:])
    if Path(spec).expanduser().is_file():
        return _file(spec)
    raise ConfigError(f"unknown statistics corpus {spec!r}", where="stats_corpus",
                      hint=f"use auto, {corpus_choices(model)}")
