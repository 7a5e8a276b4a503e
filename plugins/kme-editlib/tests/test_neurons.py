"""Neuron attribution: a continuation's attribution is the sum of its tokens', thresholds are relative."""

from __future__ import annotations

import pytest
import torch

from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_editlib.neurons import above_threshold, attribute_ids, continuation_attribution
from kme_editlib.tokens import encode


@pytest.fixture(scope="module")
def model():
    return tiny_model("qwen2")


def test_continuation_sums_teacher_forced_tokens(model):
    r = default_requests()[1]
    target = "Paris London"
    total = continuation_attribution(model, r.text, target, [0, 1], steps=6)
    ids = encode(model, r.text)
    expect = {0: torch.zeros_like(total[0]), 1: torch.zeros_like(total[1])}
    toks = model.target_ids(r.text, target)
    assert len(toks) > 1
    for tok in toks:
        attr, _ = attribute_ids(model, ids, tok, [0, 1], steps=6)
        for layer in expect:
            expect[layer] += attr[layer]
        ids = ids + [tok]
    for layer in expect:
        assert torch.allclose(total[layer], expect[layer], atol=1e-7)


def test_threshold_is_relative_to_the_largest_over_all_layers():
    attr = {0: torch.tensor([1.0, 0.05, -3.0]), 1: torch.tensor([0.2, 0.5, 0.0])}
    assert above_threshold(attr, 0.1) == {(0, 0): 1.0, (1, 0): pytest.approx(0.2), (1, 1): 0.5}
    assert above_threshold(attr, 0.6) == {(0, 0): 1.0}
    assert above_threshold({0: torch.tensor([-1.0, 0.0])}, 0.1) == {}
