"""Accuracy-type metrics against hand-computed values on the bigram stub."""

from __future__ import annotations

import pytest

from kme import EditRequest, PortabilityQuestion
from kme_metrics.accuracy import Accuracy, Generality, MultihopAccuracy, Portability, TokenAccuracy
from kme_metrics.judging import Question, exact_match, judge

P1 = "The capital of France is"       # ends in 'Ġis'
P2 = "Bob Jones speaks"               # ends in 'ks'
P3 = "The Colosseum is located in"    # ends in 'Ġin'
P4 = "Toko Yasuda plays the"          # ends in 'he'
PARIS, ROME, PARISIAN, ROMEO = 307, 308, [307, 73, 261], [308, 79]


def req(i: int, prompt: str, new: str, **kw) -> EditRequest:
    subject = prompt.split()[1]
    return EditRequest(case_id=i, prompt=prompt, subject=subject, target_new=new, **kw)


def test_prompts_end_in_distinct_tokens(stub):
    assert len({stub.last(p) for p in (P1, P2, P3, P4)}) == 4
    assert stub.target(P1, "Parisian") == PARISIAN and stub.target(P1, "Romeo") == ROMEO


def test_multi_token_target_argmax_token_and_exact(stub, ctx):
    # ' Parisian' = [ĠParis, i, an]: first and last tokens are the argmax, the middle one is not
    stub.chain(P1, " Parisian", [0.6, 0.3, 0.9], extra=[{}, {5: 0.5}, {}])
    r = [req(0, P1, " Parisian")]
    assert Accuracy({"scoring": "argmax"}).compute(stub.model, r, ctx()) == [0.0]
    assert Accuracy({"scoring": "token"}).compute(stub.model, r, ctx()) == [pytest.approx(2 / 3)]
    assert Accuracy({"scoring": "exact"}).compute(stub.model, r, ctx()) == [0.0]
    assert TokenAccuracy().compute(stub.model, r, ctx()) == [pytest.approx(2 / 3)]
    stub.chain(P1, " Parisian", [0.6, 0.6, 0.9])
    for mode in ("argmax", "token", "exact"):
        assert Accuracy({"scoring": mode}).compute(stub.model, r, ctx()) == [1.0], mode


def test_target_with_or_without_leading_space_scores_the_same(stub, ctx):
    stub.chain(P1, " Parisian", [0.6, 0.3, 0.9], extra=[{}, {5: 0.5}, {}])
    with_space = [req(0, P1, " Parisian")]
    without = [req(0, P1, "Parisian")]
    for mode in ("argmax", "token", "exact"):
        m = Accuracy({"scoring": mode})
        assert m.compute(stub.model, with_space, ctx()) == m.compute(stub.model, without, ctx())


def test_exact_match_needs_a_word_boundary(stub):
    # The model continues ' Paris' into ' Parisian': the answer ' Paris' is not stated.
    stub.chain(P1, " Parisian", [0.6, 0.6, 0.9])
    stub.set_row(stub.last(P2), {ROME: 0.9})
    qs = [Question(P1, (" Paris",)), Question(P2, (" Rome",)), Question(P2, (" Romeo",))]
    # one generate call of the longest answer's length (2 tokens) serves all three questions
    calls = stub.lm.calls["generate"]
    assert judge(stub.model, qs, "exact") == [0.0, 1.0, 0.0]
    assert stub.lm.calls["generate"] == calls + 1


@pytest.mark.parametrize("generated,answer,ok", [
    (" Paris", "Paris", True), ("Paris.", " Paris", True), ("Paris is big", "Paris", True),
    ("Parisian", "Paris", False), ("  New   York City", "New York", True), ("", "Paris", False),
    ("paris", "Paris", False), ("Paris_2", "Paris", False),
])
def test_exact_match_rule(generated, answer, ok):
    assert exact_match(generated, answer) is ok


def test_categorical_targets_use_argmax_over_choices(stub, ctx):
    # ' yes' = [Ġ, y, e, s], ' no' = [Ġ, n, o]; P(yes) = .9*.3*.9*.9 = .2187 > P(no) = .9*.5*.2 = .09
    last = stub.last(P1)
    stub.set_row(last, {221: 0.9})
    stub.set_row(221, {89: 0.3, 78: 0.5})
    stub.set_row(89, {69: 0.9})
    stub.set_row(69, {83: 0.9})
    stub.set_row(78, {79: 0.2})
    choices = ["yes", "no"]
    yes = req(0, P1, "yes", choices=choices)
    no = req(1, P1, "no", choices=choices)
    # teacher-forced, ' yes' is not the argmax path (n beats y after Ġ), but as a label it wins
    for mode in ("argmax", "token", "exact"):
        assert Accuracy({"scoring": mode}).compute(stub.model, [yes, no], ctx()) == [1.0, 0.0], mode
    m = Accuracy()
    m.compute(stub.model, [yes, no], ctx(phase="baseline"))
    assert m.details()["baseline"]["categorical_probes"] == 2


def test_tied_choices_count_as_wrong(stub, ctx):
    stub.set_row(stub.last(P1), {PARIS: 0.4, ROME: 0.4})
    choices = [" Paris", " Rome"]
    rs = [req(0, P1, " Paris", choices=choices), req(1, P1, " Rome", choices=choices)]
    assert Accuracy().compute(stub.model, rs, ctx()) == [0.0, 0.0]
    stub.set_row(stub.last(P1), {PARIS: 0.41, ROME: 0.4})
    assert Accuracy().compute(stub.model, rs, ctx()) == [1.0, 0.0]


def test_generality_per_edit_and_pooled(stub, ctx):
    stub.set_row(stub.last(P2), {ROME: 0.7})   # paraphrase X: right
    stub.set_row(stub.last(P3), {ROME: 0.2, PARIS: 0.5})   # paraphrase Y: wrong
    a = req(0, P1, " Rome", paraphrase_prompts=[P2, P3])
    b = req(1, P4, " Rome", paraphrase_prompts=[P2])
    c = req(2, P4, " Rome")
    m = Generality()
    calls = stub.lm.calls["forward"]
    assert m.compute(stub.model, [a, b, c], ctx()) == [0.5, 1.0, None]
    assert stub.lm.calls["forward"] == calls + 1  # every probe of every request: one forward pass
    d = m.details()["batch"]
    assert d["per_edit_mean"] == pytest.approx(0.75)          # Eq. 8 averaged over edits
    assert d["pooled_over_probes"] == pytest.approx(2 / 3)     # every probe once per edit
    assert d["pooled_over_unique_probes"] == pytest.approx(0.5)  # Eq. 9 over the union X_E


def test_portability_aliases_kinds_and_multihop_rule(stub, ctx):
    stub.set_row(stub.last(P2), {ROME: 0.2, PARIS: 0.6})
    stub.set_row(stub.last(P3), {ROME: 0.2, PARIS: 0.6})
    stub.set_row(stub.last(P4), {ROME: 0.8})
    qs = [
        PortabilityQuestion(prompt=P2, target_new=" Rome", aliases=[" Paris"], kind="one-hop"),  # alias right
        PortabilityQuestion(prompt=P3, target_new=" Rome", kind="multihop"),                     # wrong
        PortabilityQuestion(prompt=P4, target_new=" Rome", kind="multihop"),                     # right
    ]
    r = req(0, P1, " Rome", portability=qs)
    bare = req(1, P1, " Rome")
    assert Portability().compute(stub.model, [r, bare], ctx()) == [pytest.approx(2 / 3), None]
    assert Portability({"kinds": ["one-hop"]}).compute(stub.model, [r], ctx()) == [1.0]
    assert MultihopAccuracy().compute(stub.model, [r, bare], ctx()) == [1.0, None]
    assert MultihopAccuracy({"case_rule": "mean"}).compute(stub.model, [r], ctx()) == [0.5]
    assert MultihopAccuracy({"scoring": "argmax"}).compute(stub.model, [r], ctx()) == [1.0]
