"""Text statistics for generation metrics: n-gram entropy (ROME's fluency) and TF-IDF cosine
(ROME's reference score / consistency). Pure Python, no model involved."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["word_tokens", "ngram_entropy", "weighted_ngram_entropy", "TfIdf", "ROME_NS", "ROME_WEIGHTS"]

ROME_NS = (2, 3)
ROME_WEIGHTS = (2 / 3, 4 / 3)

_WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
_TFIDF_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def word_tokens(text: str) -> list[str]:
    """Words (with inner hyphens/apostrophes) and single punctuation marks."""
    return _WORD.findall(text)


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    """Shannon entropy (bits) of the n-gram frequency distribution of ``tokens``; 0 when the
    text has fewer than ``n`` tokens."""
    counts = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def weighted_ngram_entropy(text: str, ns: Sequence[int] = ROME_NS, weights: Sequence[float] = ROME_WEIGHTS) -> float:
    """ROME's generation entropy of one text: the arithmetic mean of ``w_n * H_n`` over
    ``n in ns`` (bi- and tri-grams weighted 2/3 and 4/3)."""
    if len(ns) != len(weights) or not ns:
        raise ValueError("ns and weights must be non-empty and of equal length")
    toks = word_tokens(text)
    return sum(w * ngram_entropy(toks, n) for n, w in zip(ns, weights)) / len(ns)


def tfidf_terms(text: str) -> list[str]:
    """Lower-cased words of two or more word characters (the usual TF-IDF token rule)."""
    return _TFIDF_TOKEN.findall(text.lower())


class TfIdf:
    """Smoothed inverse document frequencies fitted on a corpus, and cosine similarity of two
    texts' TF-IDF vectors (raw term counts times idf, L2-normalised).

    ``idf(t) = ln((1 + N) / (1 + df(t))) + 1``; terms outside the fitted vocabulary are ignored.
    """

    def __init__(self, idf: dict[str, float]):
        self.idf = idf

    @classmethod
    def fit(cls, documents: Iterable[str]) -> "TfIdf":
        docs = list(documents)
        df: Counter[str] = Counter()
        for d in docs:
            df.update(set(tfidf_terms(d)))
        n = len(docs)
        return cls({t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()})

    def vector(self, text: str) -> dict[str, float]:
        tf = Counter(t for t in tfidf_terms(text) if t in self.idf)
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
