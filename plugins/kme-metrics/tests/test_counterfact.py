"""CounterFact score/magnitude metrics against hand-computed probabilities."""

from __future__ import annotations

import math

import pytest

from kme import EditRequest, Probe
from kme_metrics.counterfact import (EfficacyMagnitude, EfficacyScore, NeighborhoodMagnitude, NeighborhoodScore,
                                     ParaphraseMagnitude, ParaphraseScore)

P1 = "The capital of France is"
P2 = "Bob Jones speaks"
P3 = "The Colosseum is located in"
P4 = "Toko Yasuda plays the"
PARIS, ROME = 307, 308


def req(i, prompt, new, true=None, **kw):
    return EditRequest(case_id=i, prompt=prompt, subject=prompt.split()[1], target_new=new, target_true=true, **kw)


def test_efficacy_single_token(stub, ctx):
    stub.set_row(stub.last(P1), {ROME: 0.6, PARIS: 0.3})
    r = [req(0, P1, " Rome", " Paris"), req(1, P1, " Paris", " Rome"), req(2, P1, " Rome")]
    assert EfficacyScore().compute(stub.model, r, ctx()) == [1.0, 0.0, None]
    assert EfficacyMagnitude().compute(stub.model, r, ctx()) == [pytest.approx(0.3), pytest.approx(-0.3), None]


def test_efficacy_multi_token_is_length_normalised_like_rome(stub, ctx):
    # ' Romeo' = [ĠRome, o] with P = .5 and .8; ' Paris' one token with P = .3
    stub.set_row(stub.last(P1), {ROME: 0.5, PARIS: 0.3})
    stub.set_row(ROME, {79: 0.8})
    r = [req(0, P1, " Romeo", " Paris")]
    geo = math.sqrt(0.5 * 0.8)  # exp(mean log-prob) = per-token geometric mean
    assert EfficacyMagnitude().compute(stub.model, r, ctx()) == [pytest.approx(geo - 0.3, abs=1e-6)]
    assert EfficacyMagnitude({"length_normalize": False}).compute(stub.model, r, ctx()) == \
        [pytest.approx(0.4 - 0.3, abs=1e-6)]
    # normalised: .632 > .3 wins; unnormalised: .4 > .3 wins as well; make the sum lose:
    stub.set_row(ROME, {79: 0.5})  # P(Romeo) = .25 < .3, but its geometric mean .5 > .3
    assert EfficacyScore().compute(stub.model, r, ctx()) == [1.0]
    assert EfficacyScore({"length_normalize": False}).compute(stub.model, r, ctx()) == [0.0]


def test_tie_is_not_a_success(stub, ctx):
    stub.set_row(stub.last(P1), {ROME: 0.4, PARIS: 0.4})
    r = [req(0, P1, " Rome", " Paris")]
    assert EfficacyScore().compute(stub.model, r, ctx()) == [0.0]
    assert EfficacyMagnitude().compute(stub.model, r, ctx()) == [0.0]
    m = EfficacyScore()
    m.compute(stub.model, r, ctx())
    assert m.details()["batch"]["ties"] == 1


def test_paraphrase_mean_over_prompts(stub, ctx):
    stub.set_row(stub.last(P2), {ROME: 0.5, PARIS: 0.1})
    stub.set_row(stub.last(P3), {ROME: 0.1, PARIS: 0.3})
    r = [req(0, P1, " Rome", " Paris", paraphrase_prompts=[P2, P3]), req(1, P1, " Rome", " Paris")]
    assert ParaphraseScore().compute(stub.model, r, ctx()) == [0.5, None]
    assert ParaphraseMagnitude().compute(stub.model, r, ctx()) == [pytest.approx((0.4 - 0.2) / 2), None]


def test_neighborhood_compares_the_probe_target_with_the_new_object(stub, ctx):
    stub.set_row(stub.last(P2), {PARIS: 0.5, ROME: 0.2})   # unchanged: Paris still wins
    stub.set_row(stub.last(P3), {PARIS: 0.1, ROME: 0.6})   # bled: Rome now wins
    probes = [Probe(prompt=P2, target=" Paris"), Probe(prompt=P3, target=" Paris"),
              Probe(prompt=P4, target="Rome")]  # answer equals the new object: cannot separate, skipped
    r = [req(0, P1, " Rome", " Paris", neighborhood=probes), req(1, P1, " Rome", " Paris"),
         req(2, P1, " Rome", neighborhood=[Probe(prompt=P4, target=" Rome")])]
    assert NeighborhoodScore().compute(stub.model, r, ctx()) == [0.5, None, None]
    assert NeighborhoodMagnitude().compute(stub.model, r, ctx()) == [pytest.approx((0.3 - 0.5) / 2), None, None]


def test_all_probes_share_one_forward_pass(stub, ctx):
    r = [req(i, P1, " Rome", " Paris", paraphrase_prompts=[P2, P3],
             neighborhood=[Probe(prompt=P4, target=" Paris")]) for i in range(5)]
    for m in (EfficacyScore(), ParaphraseScore(), NeighborhoodScore()):
        before = stub.lm.calls["forward"]
        m.compute(stub.model, r, ctx())
        assert stub.lm.calls["forward"] == before + 1, m.name
