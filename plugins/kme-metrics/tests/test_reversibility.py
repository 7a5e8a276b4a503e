"""``reversibility`` against hand-set distributions on the bigram stub, and on the fact world."""

from __future__ import annotations

import pytest

import kme
from kme import EditRequest, PortabilityQuestion
from kme_metrics.reversibility import Reversibility

P1 = "The capital of France is"       # the edit prompt
P2 = "Bob Jones speaks"               # reverse question 1 (ends in 'ks')
P3 = "The Colosseum is located in"    # reverse question 2 (ends in 'Ġin')
PARIS, ROME = 307, 308


def _request(portability: list[PortabilityQuestion]) -> EditRequest:
    return EditRequest(case_id=0, prompt=P1, subject="France", target_new=" Rome", portability=portability)


def test_mean_over_reverse_questions_only(stub, ctx):
    stub.set_row(stub.last(P2), {ROME: 0.6, PARIS: 0.3})   # the subject wins
    stub.set_row(stub.last(P3), {ROME: 0.3, PARIS: 0.6})   # the old answer still wins
    qs = [PortabilityQuestion(prompt=P2, target_new=" Rome", target_true=" Paris", kind="reverse"),
          PortabilityQuestion(prompt=P3, target_new=" Rome", target_true=" Paris", kind="reverse"),
          PortabilityQuestion(prompt=P2, target_new=" Paris", kind="multihop")]  # not a reverse question
    r, bare = _request(qs), _request([])
    assert Reversibility().compute(stub.model, [r, bare], ctx()) == [0.5, None]
    for mode in ("token", "exact", "comparison"):
        assert Reversibility({"scoring": mode}).compute(stub.model, [r], ctx()) == [0.5], mode


def test_comparison_is_the_papers_score_and_skips_questions_without_a_true_answer(stub, ctx):
    # ' Paris' is the top-1 answer (argmax fails), yet the subject beats target_true (comparison succeeds)
    stub.set_row(stub.last(P2), {PARIS: 0.5, ROME: 0.3})
    qs = [PortabilityQuestion(prompt=P2, target_new=" Rome", target_true=" Colosseum", kind="reverse"),
          PortabilityQuestion(prompt=P3, target_new=" Rome", kind="reverse")]  # no target_true: not compared
    r = _request(qs)
    assert Reversibility().compute(stub.model, [r], ctx()) == [0.0]
    m = Reversibility({"scoring": "comparison"})
    assert m.compute(stub.model, [r], ctx()) == [1.0]
    d = m.details()["batch"]
    assert d["probes"] == 1 and d["per_edit_mean"] == 1.0
    only_untrue = _request(qs[1:])
    assert m.compute(stub.model, [only_untrue], ctx()) == [None]


def test_scoring_labels_and_bad_params():
    assert type(Reversibility()).scoring == "teacher-forced-exact-match"
    assert type(Reversibility({"scoring": "comparison"})).scoring == "probability-comparison"
    assert type(Reversibility({"scoring": "comparison", "length_normalize": False})).scoring == \
        "probability-comparison/sequence-logprob"
    with pytest.raises(Exception, match="scoring"):
        Reversibility({"scoring": "top5"})


def test_registered_and_reads_the_fact_worlds_reverse_questions():
    pm = kme.build_plugin_manager()
    assert pm.metrics.get("reversibility") is Reversibility
    assert pm.metrics.owner("reversibility") == "metrics"
    ds = pm.datasets.get("factworld")({"relations": ["capital"], "reverse_probes": True, "limit": 3})
    reqs = list(ds.load())
    model = kme.load_model("factworld", pm)
    ctx = kme.EvalContext(phase="baseline")  # type: ignore[arg-type]
    # unedited, the reverse question names the new city's own country, not the edited subject
    base = Reversibility().compute(model, reqs, ctx)
    rqs = Reversibility({"scoring": "comparison"}).compute(model, reqs, ctx)
    for r, v, c in zip(reqs, base, rqs):
        trivial = all(q.target_true is None for q in r.portability if q.kind == "reverse")
        assert v == (1.0 if trivial else 0.0) and (c is None if trivial else c == 0.0)
