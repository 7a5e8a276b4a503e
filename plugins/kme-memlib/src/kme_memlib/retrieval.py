"""Nearest-neighbour retrieval over texts, shared by kme's memory editors (IKE, MemPrompt,
Language Patch, MeLLo).

Three embedders, chosen by the ``embedder`` param of an editor:

* ``tfidf`` (default, offline, no model): TF-IDF over lower-cased words and word bigrams, the
  idf fitted on the indexed texts and on text sampled from the model itself, cosine
  similarity. Names of invented or rare entities weigh most, which is what matching a query
  to the edit about its subject needs.
* ``lm``: the edited language model's own last hidden states, mean-pooled over the text's
  tokens (no download; quality depends on the model).
* ``transformers``: a sentence-embedding model loaded with ``transformers.AutoModel`` from a
  hub id or local path (``embedder_model``; e.g. ``sentence-transformers/all-MiniLM-L6-v2``,
  the model the IKE paper uses), mean pooling over the attention mask, L2-normalised.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from kme import ConfigError

from kme_memlib.sampling import sample_ids
from kme_memlib.tfidf import TfIdf, words_and_bigrams

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["Embedder", "TfidfEmbedder", "LMEmbedder", "TransformersEmbedder", "make_embedder", "Index",
           "EmbedderName"]

EmbedderName = Literal["tfidf", "lm", "transformers"]


class Embedder:
    """Turns texts into L2-normalised vectors; ``fit`` sees the indexed texts first."""

    name = ""

    def fit(self, texts: Sequence[str]) -> "Embedder":
        return self

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """JSON-serialisable description (saved with edits, for reports)."""
        return {"embedder": self.name}


class TfidfEmbedder(Embedder):
    """Sublinear TF-IDF of words and word bigrams, smoothed idf (:class:`kme_memlib.tfidf.TfIdf`).

    The idf is fitted on the indexed texts plus ``background`` texts. Without a background, a
    memory of a few edits makes every word equally rare, and a query sharing the relation's
    words ("Y was born in") looks closer to an edit ("X was born in") than one sharing its
    subject ("The birthplace of X is"). Text sampled from the model itself
    (:func:`background_texts`) makes frequent words cheap and names dear, with no corpus.
    """

    name = "tfidf"

    def __init__(self, background: Sequence[str] = ()) -> None:
        self.background = list(background)
        self.tfidf = TfIdf({}, terms=words_and_bigrams, sublinear=True)
        self.vocab: dict[str, int] = {}

    @property
    def idf(self) -> dict[str, float]:
        return self.tfidf.idf

    def fit(self, texts: Sequence[str]) -> "TfidfEmbedder":
        self.tfidf = TfIdf.fit(list(texts) + self.background, terms=words_and_bigrams, sublinear=True)
        self.vocab = {w: i for i, w in enumerate(sorted(self.idf))}
        return self

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), max(1, len(self.vocab)))
        for i, t in enumerate(texts):
            for w, v in self.tfidf.vector(t).items():
                out[i, self.vocab[w]] = v
        return torch.nn.functional.normalize(out, dim=-1)


class LMEmbedder(Embedder):
    """Mean of the edited model's last hidden states over a text's tokens."""

    name = "lm"

    def __init__(self, model: "EditedModel", batch_size: int = 32):
        self.model = model
        self.batch_size = batch_size

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.model.tokenizer
        side = tok.padding_side
        tok.padding_side = "right"
        rows = []
        try:
            for s in range(0, len(texts), self.batch_size):
                enc = tok(list(texts[s:s + self.batch_size]), return_tensors="pt", padding=True)
                enc = {k: v.to(self.model.device) for k, v in enc.items()}
                out = self.model.model(**enc, output_hidden_states=True)
                h = out.hidden_states[-1].float()
                m = enc["attention_mask"].unsqueeze(-1).float()
                rows.append(((h * m).sum(1) / m.sum(1).clamp_min(1)).cpu())
        finally:
            tok.padding_side = side
        return torch.nn.functional.normalize(torch.cat(rows) if rows else torch.empty(0, 1), dim=-1)


class TransformersEmbedder(Embedder):
    """A sentence-embedding encoder (hub id or local path), mean pooling, normalised."""

    name = "transformers"
    _cache: dict[str, tuple[Any, Any]] = {}

    def __init__(self, model_name: str, batch_size: int = 32):
        self.model_name = model_name
        self.batch_size = batch_size
        if model_name not in self._cache:
            from transformers import AutoModel, AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(model_name)
                enc = AutoModel.from_pretrained(model_name)
            except Exception as e:  # noqa: BLE001 - any loading failure gets the same advice
                raise ConfigError(
                    f"cannot load the sentence-embedding model {model_name!r}: {type(e).__name__}: {e}",
                    where="editor params.embedder_model",
                    hint="give a local directory holding the model, allow hub downloads, or use embedder: tfidf "
                         "(offline, no model)") from None
            enc.eval()
            self._cache[model_name] = (tok, enc)
        self.tok, self.enc = self._cache[model_name]

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for s in range(0, len(texts), self.batch_size):
            enc = self.tok(list(texts[s:s + self.batch_size]), return_tensors="pt", padding=True, truncation=True)
            h = self.enc(**enc).last_hidden_state.float()
            m = enc["attention_mask"].unsqueeze(-1).float()
            rows.append((h * m).sum(1) / m.sum(1).clamp_min(1))
        return torch.nn.functional.normalize(torch.cat(rows) if rows else torch.empty(0, 1), dim=-1)

    def state(self) -> dict[str, Any]:
        return {"embedder": self.name, "model": self.model_name}


_backgrounds: "weakref.WeakKeyDictionary[Any, dict[tuple[int, int], list[str]]]" = weakref.WeakKeyDictionary()


@torch.no_grad()
def background_texts(model: "EditedModel", n: int = 128, tokens: int = 32, seed: int = 0) -> list[str]:
    """``n`` seeded samples of ``tokens`` tokens continued from the beginning-of-text token by
    the model itself (its weights as they are at first use), cached per model."""
    cache = _backgrounds.setdefault(model, {})
    if (n, tokens) in cache:
        return cache[(n, tokens)]
    out = sample_ids(model, n, tokens, seed) if n > 0 else None
    texts: list[str] = []
    if out is not None:
        dec = model.tokenizer.decode
        texts = [t for t in (dec(r[1:], skip_special_tokens=True).strip() for r in out) if t]
    cache[(n, tokens)] = texts
    return texts


def make_embedder(name: str, model: "EditedModel", embedder_model: str | None = None) -> Embedder:
    """The embedder an editor's params name (fresh, unfitted)."""
    if name == "tfidf":
        return TfidfEmbedder(background_texts(model))
    if name == "lm":
        return LMEmbedder(model)
    if name == "transformers":
        if not embedder_model:
            raise ConfigError("embedder 'transformers' needs embedder_model (a hub id or local path)",
                              where="editor params.embedder_model",
                              hint="e.g. embedder_model: sentence-transformers/all-MiniLM-L6-v2")
        return TransformersEmbedder(embedder_model)
    raise ConfigError(f"unknown embedder {name!r}", where="editor params.embedder",
                      hint="one of: tfidf, lm, transformers")


class Index:
    """Texts, their embeddings and cosine top-k search."""

    def __init__(self, texts: Sequence[str], embedder: Embedder):
        self.texts = list(texts)
        self.embedder = embedder.fit(self.texts)
        self.vectors = embedder.embed(self.texts) if self.texts else torch.empty(0, 1)

    def __len__(self) -> int:
        return len(self.texts)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        """Per query, up to ``k`` (index, cosine similarity) pairs, most similar first."""
        if not self.texts or not queries or k <= 0:
            return [[] for _ in queries]
        q = self.embedder.embed(list(queries))
        sims = q @ self.vectors.T
        k = min(k, len(self.texts))
        vals, idx = sims.topk(k, dim=-1)
        return [[(int(i), float(v)) for i, v in zip(ri, rv)] for ri, rv in zip(idx, vals)]
