"""Text statistics for generation metrics: n-gram entropy (ROME's fluency) and TF-IDF cosine
(ROME's reference score / consistency). Pure Python, no model involved.

:class:`TfIdf` is kme-memlib's TF-IDF (:mod:`kme_memlib.tfidf`) with its default setting, the
one of ROME's released consistency metric: raw term counts, words of two or more characters."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from kme_memlib.tfidf import TfIdf

__all__ = ["word_tokens", "ngram_entropy", "weighted_ngram_entropy", "TfIdf", "ROME_NS", "ROME_WEIGHTS"]

ROME_NS = (2, 3)
ROME_WEIGHTS = (2 / 3, 4 / 3)

_WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")


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
