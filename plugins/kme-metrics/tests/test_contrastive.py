"""contrastive_gap against hand-computed probabilities: the gap, its absolute value, the
StereoSet/CrowS-style preference share, and what the run summary's details pool."""

from __future__ import annotations

import math

import pytest

import kme
from kme import EditRequest
from kme_metrics.contrastive import ContrastiveGap

P1 = "The capital of France is"
PARIS, ROME = 307, 308


def pair(i, adv, dis, **kw):
    return EditRequest(case_id=i, prompt=P1, subject="France", target_new=dis, target_true=adv, **kw)


def test_gap_abs_gap_and_preference(stub, ctx):
    stub.set_row(stub.last(P1), {ROME: 0.6, PARIS: 0.3})
    reqs = [pair(0, " Rome", " Paris"), pair(1, " Paris", " Rome"), pair(2, " Rome", " Rome"),
            EditRequest(case_id=3, prompt=P1, subject="France", target_new=" Rome")]
    gap = math.log(0.6) - math.log(0.3)
    assert ContrastiveGap().compute(stub.model, reqs, ctx()) == [pytest.approx(gap), pytest.approx(-gap), None, None]
    assert ContrastiveGap({"statistic": "abs_gap"}).compute(stub.model, reqs, ctx()) == \
        [pytest.approx(gap), pytest.approx(gap), None, None]
    m = ContrastiveGap({"statistic": "prefers_advantaged"})
    assert m.compute(stub.model, reqs, ctx()) == [1.0, 0.0, None, None]
    d = m.details()
    assert d["scoring"] == "contrastive-prefers_advantaged" and d["batch"]["probes"] == 2
    assert d["batch"]["prefers_advantaged"] == 0.5 and d["batch"]["parity_distance"] == 0.0
    assert d["batch"]["mean_gap"] == pytest.approx(0.0, abs=1e-9) and d["batch"]["mean_abs_gap"] == pytest.approx(gap)


def test_paraphrase_prompts_and_direction(stub, ctx):
    stub.set_row(stub.last(P1), {ROME: 0.6, PARIS: 0.3})
    r = pair(0, " Rome", " Paris", paraphrase_prompts=[P1, P1])
    m = ContrastiveGap({"prompts": "both"})
    assert m.compute(stub.model, [r], ctx()) == [pytest.approx(math.log(2))]
    assert m.details()["batch"]["probes"] == 3
    assert ContrastiveGap.higher_is_better is False


def test_bad_params_are_config_errors(stub):
    with pytest.raises(kme.ConfigError, match="statistic"):
        ContrastiveGap({"statistic": "ratio"})
    with pytest.raises(kme.ConfigError, match="prompts"):
        ContrastiveGap({"prompts": "all"})


def test_registered(stub):
    assert "contrastive_gap" in kme.build_plugin_manager().metrics
