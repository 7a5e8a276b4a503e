"""kme-memlib on its own: TF-IDF against hand-computed values, search order, the shared
memory's cache, fact rendering."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from kme_memlib.facts import fact_text
from kme_memlib.memory import SharedMemory
from kme_memlib.retrieval import Index, TfidfEmbedder


def test_tfidf_matches_hand_computed_values():
    emb = TfidfEmbedder().fit(["alpha beta", "alpha gamma"])
    # terms: words and word bigrams; idf = ln((1 + N) / (1 + df)) + 1 with N = 2
    rare = math.log(3 / 2) + 1
    assert emb.idf == pytest.approx({"alpha": 1.0, "beta": rare, "gamma": rare, "alpha beta": rare,
                                     "alpha gamma": rare})
    assert list(emb.vocab) == ["alpha", "alpha beta", "alpha gamma", "beta", "gamma"]
    # sublinear tf: 1 + ln(count); "alpha" twice, "alpha alpha" once, "alpha beta" once, "beta" once
    got = emb.embed(["alpha alpha beta"])[0]
    want = torch.tensor([1 + math.log(2), rare, 0.0, rare, 0.0])
    assert torch.allclose(got, want / want.norm(), atol=1e-6)


def test_background_texts_make_shared_words_cheap():
    emb = TfidfEmbedder(background=["the city is old", "the river is long"]).fit(["the city of Zorvath"])
    assert emb.idf["zorvath"] > emb.idf["the"]


def test_index_returns_the_nearest_first():
    idx = Index(["Alice Smith was born in Paris", "Bob Jones was born in Rome", "The capital of France is Rome"],
                TfidfEmbedder())
    found = idx.search(["Where was Bob Jones born", "capital of France"], 2)
    assert [f[0][0] for f in found] == [1, 2]
    assert all(f[0][1] >= f[1][1] for f in found)
    assert Index([], TfidfEmbedder()).search(["x"], 3) == [[]]


def test_shared_memory_rebuilds_only_when_the_handles_change():
    built = []

    def make():
        built.append(1)
        return TfidfEmbedder()

    class Model:  # weakly referenced by the cache, like an EditedModel
        pass

    memory = SharedMemory(lambda item: item["fact"])
    model = Model()
    h1 = SimpleNamespace(id=1, memory=[{"fact": "Alice Smith lives in Paris"}])
    h2 = SimpleNamespace(id=2, memory=[{"fact": "Bob Jones lives in Rome"}])
    items, idx = memory.index(model, [h1], make)
    assert len(items) == 1 and len(built) == 1
    memory.index(model, [h1], make)
    assert len(built) == 1
    items, idx = memory.index(model, [h1, h2], make)
    assert len(built) == 2 and idx.search(["Bob Jones"], 1)[0][0][0] == 1


def test_fact_text_completes_the_prompt():
    assert fact_text("The capital of France is", "Rome") == "The capital of France is Rome"
