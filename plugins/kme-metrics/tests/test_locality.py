"""Locality: agreement with the unedited model, per edit (Eq. 6) and over the union (Eq. 7)."""

from __future__ import annotations

import pytest
import torch

from kme import EditRequest, Probe
from kme_metrics.locality import Locality

P1 = "The capital of France is"
P2 = "Bob Jones speaks"
P3 = "The Colosseum is located in"
P4 = "Toko Yasuda plays the"
PARIS, ROME = 307, 308
N1, N2, N3 = Probe(prompt=P2, target=" Paris"), Probe(prompt=P3, target=" Romeo"), Probe(prompt=P4, target=" Paris")


def req(i, prompt, new, **kw):
    return EditRequest(case_id=i, prompt=prompt, subject=prompt.split()[1], target_new=new, **kw)


def _world(stub):
    stub.set_row(stub.last(P2), {PARIS: 0.6})
    stub.set_row(stub.last(P3), {ROME: 0.6})
    stub.set_row(ROME, {79: 0.6})           # P3 continues ' Rome' 'o'
    stub.set_row(stub.last(P4), {PARIS: 0.6})
    return [req(0, P1, " Rome", neighborhood=[N1, N2]), req(1, P1, " Rome", neighborhood=[N2, N3]),
            req(2, P1, " Rome")]


def test_agreement_per_edit_and_over_the_union(stub, ctx):
    rs = _world(stub)
    greedy, top1 = Locality(), Locality({"mode": "top1"})
    c = ctx(phase="baseline")
    for m in (greedy, top1):
        m.prepare(stub.model, rs, c)
        assert m.compute(stub.model, rs, c) == [1.0, 1.0, None]   # the unedited model agrees with itself
    with torch.no_grad():   # the second token of N2's answer changes; its first token does not
        stub.lm.table[ROME] = 0.0
        stub.lm.table[ROME, 5] = 3.0
    c.phase = "batch"
    assert greedy.compute(stub.model, rs, c) == [0.5, 0.5, None]
    d = greedy.details()["batch"]
    assert d["pooled_over_probes"] == pytest.approx(0.5)          # N1 N2 | N2 N3
    assert d["pooled_over_unique_probes"] == pytest.approx(2 / 3)  # Eq. 7 over {N1, N2, N3}
    assert top1.compute(stub.model, rs, c) == [1.0, 1.0, None]     # top-1 only sees the first token


def test_empty_neighbourhood_lists_give_none(stub, ctx):
    rs = [req(0, P1, " Rome"), req(1, P2, " Rome")]
    m = Locality()
    m.prepare(stub.model, rs, ctx(phase="baseline"))
    assert m.compute(stub.model, rs, ctx()) == [None, None]
    assert m.compute(stub.model, [], ctx()) == []


def test_unedited_outputs_are_computed_once_and_reused(stub, ctx):
    rs = _world(stub)
    m = Locality()
    c = ctx(phase="baseline")
    before = stub.lm.calls["generate"]
    m.prepare(stub.model, rs, c)
    assert stub.lm.calls["generate"] == before + 2          # one call per answer length (1 and 2 tokens)
    assert c.cache["locality"]["greedy"]                    # JSON-serialisable reference kept in the run cache
    before = stub.lm.calls["generate"]
    m.compute(stub.model, rs, c)
    assert stub.lm.calls["generate"] == before + 2          # only the current model's outputs


def test_missing_reference_is_taken_from_the_base_model_under_suspension(stub, ctx):
    rs = _world(stub)
    edit = req(9, P2, " Rome")                             # rewrites what P2 continues with
    h = stub.model.edit("table_writer", [edit])
    edited = stub.lm.table.detach().clone()
    m = Locality()
    c = ctx()
    assert m.compute(stub.model, rs, c) == [0.5, 1.0, None]  # N1 changed, N2 and N3 did not
    assert c.cache["locality"]["greedy"][f"1\x1f{P2}"] == " Paris"   # reference = unedited output
    assert stub.model.stack == [h] and torch.equal(stub.lm.table, edited)  # the edit is back, exactly
