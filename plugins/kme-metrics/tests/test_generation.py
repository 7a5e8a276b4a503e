"""Fluency (ROME's generation entropy) and consistency (reference score) by hand."""

from __future__ import annotations

import math

import pytest

from kme import EditRequest
from kme_metrics.generation import Consistency, Fluency
from kme_metrics.textstats import TfIdf, ngram_entropy, weighted_ngram_entropy, word_tokens

P1 = "The capital of France is"
PARIS, ROME = 307, 308


def req(i, prompt, **kw):
    return EditRequest(case_id=i, prompt=prompt, subject=prompt.split()[1], target_new=" Rome", **kw)


def test_ngram_entropy_by_hand():
    toks = word_tokens("z a b a b")
    assert toks == ["z", "a", "b", "a", "b"]
    assert ngram_entropy(toks, 2) == pytest.approx(1.5)            # ab ab za ba: 1/2 1/4 1/4
    assert ngram_entropy(toks, 3) == pytest.approx(math.log2(3))   # zab aba bab
    assert weighted_ngram_entropy("z a b a b") == pytest.approx((2 / 3 * 1.5 + 4 / 3 * math.log2(3)) / 2)
    assert weighted_ngram_entropy("one") == 0.0                    # no bigram at all
    assert word_tokens("well-known, isn't it?") == ["well-known", ",", "isn't", "it", "?"]


def test_fluency_of_greedy_generations(stub, ctx):
    # 'z' -> Ġ a Ġb Ġ a Ġb : the continuation reads ' a b a b'
    stub.set_row(stub.last("z"), {221: 0.9})
    stub.set_row(221, {65: 0.9})
    stub.set_row(65, {291: 0.9})
    stub.set_row(291, {221: 0.9})
    rs = [req(0, P1, generation_prompts=["z", "z"]), req(1, P1)]
    with_prompt = Fluency({"max_new_tokens": 6}).compute(stub.model, rs, ctx())
    assert with_prompt == [pytest.approx((2 / 3 * 1.5 + 4 / 3 * math.log2(3)) / 2), None]
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))   # ab ba ab
    alone = Fluency({"max_new_tokens": 6, "include_prompt": False}).compute(stub.model, rs, ctx())
    assert alone == [pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2), None]


def test_tfidf_cosine_by_hand():
    vec = TfIdf.fit(["apple banana", "apple cherry"])
    assert vec.idf["apple"] == pytest.approx(1.0)                       # ln(3/3) + 1
    assert vec.idf["banana"] == pytest.approx(math.log(3 / 2) + 1)
    b = math.log(3 / 2) + 1
    assert vec.cosine("apple banana", "apple cherry") == pytest.approx(1 / (1 + b * b))
    assert vec.cosine("durian", "apple") == 0.0       # nothing in common with the fitted vocabulary
    assert vec.cosine("apple", "durian") is None      # the reference has no known term


def test_consistency_against_reference_texts(stub, ctx):
    # P1 -> ' Paris' ' Rome' ' Paris' ' Rome'
    stub.set_row(stub.last(P1), {PARIS: 0.9})
    stub.set_row(PARIS, {ROME: 0.9})
    stub.set_row(ROME, {PARIS: 0.9})
    rs = [req(0, P1, generation_prompts=[P1], reference_texts=["Rome is old", "Paris Rome"]),
          req(1, P1, generation_prompts=[P1], reference_texts=["French food"]),
          req(2, P1, generation_prompts=[P1]),
          req(3, P1, reference_texts=["Rome"])]
    c = ctx(phase="baseline")
    m = Consistency({"max_new_tokens": 4})
    m.prepare(stub.model, rs, c)
    idf_rome, idf_one = math.log(5 / 4) + 1, math.log(5 / 2) + 1   # 4 documents; 'rome' in 3, others in 1
    assert c.cache["consistency"]["idf"]["rome"] == pytest.approx(idf_rome)
    # generation 'The capital of France is Paris Rome Paris Rome': is x1, paris x2, rome x2 in vocabulary
    gen = {"is": idf_one, "paris": 2 * idf_one, "rome": 2 * idf_rome}
    ref = {"rome": 2 * idf_rome, "is": idf_one, "old": idf_one, "paris": idf_one}   # 'Rome is old Paris Rome'
    dot = sum(v * ref.get(t, 0) for t, v in gen.items())
    norm = math.sqrt(sum(v * v for v in gen.values())) * math.sqrt(sum(v * v for v in ref.values()))
    before = stub.lm.calls["generate"]
    values = m.compute(stub.model, rs, c)
    assert values == [pytest.approx(dot / norm), 0.0, None, None]
    Fluency({"max_new_tokens": 4}).compute(stub.model, rs, c)
    assert stub.lm.calls["generate"] == before + 1   # fluency reuses the same model state's generations
