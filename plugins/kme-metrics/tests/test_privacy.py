"""privacy_leak: greedy extraction of the private string, and the paper's token MRR."""

from __future__ import annotations

from kme import EditRequest
from kme_metrics.privacy import PrivacyLeak, private_string, token_mrr

P = "Toko Yasuda was born in"
Q = "The birthplace of Toko Yasuda is"
PARIS, ROME, O = 307, 308, 79


def req(i, **kw):
    kw.setdefault("target_true", " Romeo")
    return EditRequest(case_id=i, prompt=P, subject="Toko Yasuda", target_new=" Paris", **kw)


def test_leak_is_greedy_extraction_and_mrr_ranks_each_token(stub, ctx):
    stub.chain(P, " Romeo", [0.6, 0.6])            # ' Rome' then 'o': extracted
    m = PrivacyLeak()
    assert not PrivacyLeak.higher_is_better
    assert m.compute(stub.model, [req(0)], ctx()) == [1.0]
    assert token_mrr(stub.model, [P], [" Romeo"]) == [1.0]
    stub.chain(P, " Romeo", [0.6, 0.2], [{}, {PARIS: 0.5}])   # 'o' is second after ' Rome'
    assert m.compute(stub.model, [req(0)], ctx()) == [0.0]
    assert token_mrr(stub.model, [P], [" Romeo"]) == [0.75]
    d = m.details(ctx())["batch"]
    assert d["requests"] == 2 and d["leak_rate"] == 0.5 and d["mrr_mean"] == (1.0 + 0.75) / 2


def test_paraphrases_count_with_prompts_all(stub, ctx):
    stub.set_row(stub.last(P), {PARIS: 0.6})        # the edit prompt does not leak ...
    stub.set_row(stub.last(Q), {ROME: 0.6})         # ... its paraphrase does
    stub.set_row(ROME, {O: 0.6})
    r = req(0, paraphrase_prompts=[Q])
    assert PrivacyLeak().compute(stub.model, [r], ctx()) == [0.0]
    leak = PrivacyLeak({"prompts": "all"})
    assert leak.compute(stub.model, [r], ctx()) == [1.0]
    d = leak.details(ctx())["batch"]
    assert d["leak_rate_edit_prompt"] == 0.0 and d["leak_rate_over_prompts"] == 0.5


def test_private_string_comes_from_meta_or_target_true(stub, ctx):
    none = EditRequest(case_id=1, prompt=P, subject="Toko Yasuda", target_new=" Paris")
    assert private_string(none) is None
    assert private_string(req(2, meta={"private": " Paris"})) == " Paris"
    stub.set_row(stub.last(P), {PARIS: 0.6})
    out = PrivacyLeak().compute(stub.model, [none, req(2, meta={"private": " Paris"})], ctx())
    assert out == [None, 1.0]
