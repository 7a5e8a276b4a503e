"""kme_memlib.tfidf against hand-computed values, in both of its settings: the default (words,
raw counts: kme-metrics' reference score) and words + bigrams with sublinear counts (the
memory editors' ``tfidf`` embedder)."""

from __future__ import annotations

import math

import pytest

from kme_memlib.retrieval import TfidfEmbedder
from kme_memlib.tfidf import TfIdf, words, words_and_bigrams


def test_the_two_term_rules():
    # words: lower-cased, two or more word characters ("a" and "s" are too short)
    assert words("The cat's 2 cats, a DOG") == ["the", "cat", "cats", "dog"]
    # words and bigrams: quotes stripped, a lone possessive 's dropped, then the bigrams
    assert words_and_bigrams("Anna 's 'cat' sat") == ["anna", "cat", "sat", "anna cat", "cat sat"]


def test_default_setting_raw_counts_of_words():
    tfidf = TfIdf.fit(["The cat sat", "the cat ran", "a dog ran"])
    # N = 3 documents; df: the 2, cat 2, ran 2, sat 1, dog 1 ("a" is no term)
    # idf = ln((1 + N) / (1 + df)) + 1
    c = math.log(4 / 3) + 1  # df 2
    d = math.log(4 / 2) + 1  # df 1
    assert tfidf.idf == pytest.approx({"the": c, "cat": c, "sat": d, "ran": c, "dog": d})
    # "the" x2, "cat" x2, "dog" x1; "and" is not in the vocabulary; weight = count * idf
    got = tfidf.vector("The cat, the CAT and a dog")
    assert list(got) == ["the", "cat", "dog"]
    assert got == pytest.approx({"the": 2 * c, "cat": 2 * c, "dog": d})
    # cosine: dot / (|a| |b|); "the sat" . "the dog" = c*c (only "the" shared)
    assert tfidf.cosine("the sat", "the dog") == pytest.approx(c * c / (c * c + d * d))
    assert tfidf.cosine("the cat", "a dog") == 0.0    # nothing shared
    assert tfidf.cosine("zebra", "the cat") == 0.0    # no vocabulary term in the first text
    assert tfidf.cosine("the cat", "zebra") is None   # none in the reference


def test_sublinear_setting_words_and_bigrams():
    tfidf = TfIdf.fit(["Anna 's cat sat", "the cat sat"], terms=words_and_bigrams, sublinear=True)
    # terms: {anna, cat, sat, "anna cat", "cat sat"} and {the, cat, sat, "the cat", "cat sat"}; N = 2
    r = math.log(3 / 2) + 1  # df 1
    assert tfidf.idf == pytest.approx({"anna": r, "cat": 1.0, "sat": 1.0, "anna cat": r, "cat sat": 1.0,
                                       "the": r, "the cat": r})
    # "cat sat, cat sat": cat x2, sat x2, "cat sat" x2, "sat cat" x1 (not in the vocabulary);
    # weight = (1 + ln count) * idf
    assert tfidf.vector("cat sat, cat sat") == pytest.approx({"cat": 1 + math.log(2), "sat": 1 + math.log(2),
                                                              "cat sat": 1 + math.log(2)})
    # "Anna 's cat" = {anna: r, cat: 1, "anna cat": r}, "the cat" = {the: r, cat: 1, "the cat": r}
    assert tfidf.cosine("Anna 's cat", "the cat") == pytest.approx(1 / (2 * r * r + 1))


def test_the_embedder_is_the_sublinear_setting():
    texts = ["Anna 's cat sat", "the cat sat"]
    emb = TfidfEmbedder().fit(texts)
    ref = TfIdf.fit(texts, terms=words_and_bigrams, sublinear=True)
    assert emb.idf == ref.idf
    assert list(emb.vocab) == sorted(ref.idf)
    row = emb.embed(["cat sat, cat sat"])[0]
    want = ref.vector("cat sat, cat sat")
    norm = math.sqrt(sum(v * v for v in want.values()))
    assert row.tolist() == pytest.approx([want.get(w, 0.0) / norm for w in emb.vocab], abs=1e-6)
