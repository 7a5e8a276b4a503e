"""TF-IDF: inverse document frequencies fitted on a corpus, the TF-IDF weights of a text, and
the cosine of two texts' weights. Pure Python, no model involved.

``idf(t) = ln((1 + N) / (1 + df(t))) + 1`` (smoothed; ``N`` documents, ``df(t)`` of them hold
``t``); terms outside the fitted vocabulary are ignored. Two settings serve kme's callers:

* the defaults -- terms are :func:`words` (lower-cased words of two or more word characters,
  the usual TF-IDF token rule), weight = raw count x idf: ROME's released consistency metric
  (kme-metrics' reference score);
* ``terms=words_and_bigrams, sublinear=True`` -- words and word bigrams, weight =
  (1 + ln count) x idf: the memory editors' retrieval (:class:`kme_memlib.retrieval.TfidfEmbedder`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable

__all__ = ["TfIdf", "words", "words_and_bigrams"]

Terms = Callable[[str], list[str]]

_WORD = re.compile(r"(?u)\b\w\w+\b")
_WORD_OR_CONTRACTION = re.compile(r"[\w']+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words of two or more word characters (the usual TF-IDF token rule)."""
    return _WORD.findall(text.lower())


def words_and_bigrams(text: str) -> list[str]:
    """Lower-cased words (quotes stripped, possessive ``'s`` dropped), then word bigrams."""
    ws = [w.lower().strip("'") for w in _WORD_OR_CONTRACTION.findall(text)]
    ws = [w for w in ws if w and w != "s"]
    return ws + [f"{a} {b}" for a, b in zip(ws, ws[1:])]


class TfIdf:
    """Inverse document frequencies ``idf`` and the TF-IDF weights and cosine they give.

    ``terms`` splits a text into terms; ``sublinear`` weighs a term seen ``c`` times
    ``1 + ln c`` instead of ``c``.
    """

    def __init__(self, idf: dict[str, float], *, terms: Terms = words, sublinear: bool = False):
        self.idf = idf
        self.terms = terms
        self.sublinear = sublinear

    @classmethod
    def fit(cls, documents: Iterable[str], *, terms: Terms = words, sublinear: bool = False) -> "TfIdf":
        docs = list(documents)
        df: Counter[str] = Counter()
        for d in docs:
            df.update(set(terms(d)))
        n = len(docs)
        return cls({t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}, terms=terms, sublinear=sublinear)

    def vector(self, text: str) -> dict[str, float]:
        """TF-IDF weight of every vocabulary term of ``text`` (in order of first occurrence)."""
        tf = Counter(t for t in self.terms(text) if t in self.idf)
        if self.sublinear:
            return {t: (1.0 + math.log(c)) * self.idf[t] for t, c in tf.items()}
        return {t: c * self.idf[t] for t, c in tf.items()}

    def cosine(self, a: str, b: str) -> float | None:
        """Cosine of the two texts' vectors; 0.0 when ``a`` shares no vocabulary term, ``None``
        when ``b`` (the reference) has none."""
        va, vb = self.vector(a), self.vector(b)
        nb = math.sqrt(sum(v * v for v in vb.values()))
        if nb == 0:
            return None
        na = math.sqrt(sum(v * v for v in va.values()))
        if na == 0:
            return 0.0
        return sum(v * vb.get(t, 0.0) for t, v in va.items()) / (na * nb)
