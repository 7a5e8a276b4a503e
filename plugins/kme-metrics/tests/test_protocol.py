"""Retainability (Eq. 10) and scalability (Eq. 11-12) with an editor whose conflicts are known.

The stub's editor raises the prompt's last-token row towards the target with strength
10 * (1 + case_id / 10): requests 0 and 1 share a prompt, so applied together request 1 wins
and request 0 is lost; request 2 is independent.
"""

from __future__ import annotations

import pytest
import torch

from kme import EditRequest
from kme.pipeline.spec import ProtocolSpec
from kme_metrics.protocol import Retainability, Scalability, ScalabilityRelative, sample_ids

P1 = "The capital of France is"
P2 = "Bob Jones speaks"


@pytest.fixture
def reqs():
    mk = lambda i, p, t: EditRequest(case_id=i, prompt=p, subject=p.split()[1], target_new=t)  # noqa: E731
    return [mk(0, P1, " Rome"), mk(1, P1, " Paris"), mk(2, P2, " Rome")]


@pytest.fixture
def writer(stub):
    return stub.pm.editors.get("table_writer")()


def _count_edits(stub, monkeypatch):
    calls = []
    real = stub.model.edit

    def spy(*a, **kw):
        calls.append(a[1])
        return real(*a, **kw)

    monkeypatch.setattr(stub.model, "edit", spy)
    return calls


def test_scalability_absolute_and_relative(stub, ctx, reqs, writer, monkeypatch):
    c = ctx(phase="baseline", editors=[writer], protocol=ProtocolSpec(mode="batch", batch_size=3))
    sca, rel = Scalability(), ScalabilityRelative()
    edits = _count_edits(stub, monkeypatch)
    sca.prepare(stub.model, reqs, c)
    rel.prepare(stub.model, reqs, c)
    assert len(edits) == 3                                # each request once, alone; shared by both metrics
    assert sca.compute(stub.model, reqs, c) == [None] * 3   # baseline: no edit to compare
    stub.model.edit(writer, reqs)                          # the batch: request 0 loses to request 1
    table = stub.lm.table.detach().clone()
    c.phase, c.applied, c.num_edits = "batch", list(reqs), 3
    assert sca.compute(stub.model, reqs, c) == [1.0, 0.0, 0.0]      # single 1,1,1 - together 0,1,1
    assert rel.compute(stub.model, reqs, c) == [1.0, 0.0, 0.0]      # divided by mean single accuracy 1
    assert len(edits) == 4                                 # no single edit was repeated
    assert len(stub.model.stack) == 1 and torch.equal(stub.lm.table, table)
    d = sca.details()["batch"]
    assert d["sampled"] == 3 and d["population"] == 3
    assert d["pooled_eq11"] == pytest.approx(1 / 3) and d["pooled_eq12"] == pytest.approx(1 / 3)


def test_scalability_samples_and_records_the_sample(stub, ctx, reqs, writer):
    c = ctx(phase="baseline", editors=[writer], seed=7)
    m = Scalability({"sample_size": 2})
    m.prepare(stub.model, reqs, c)
    chosen = sample_ids(["0", "1", "2"], 2, 7)
    stub.model.edit(writer, reqs)
    c.phase = "batch"
    expected = {"0": 1.0, "1": 0.0, "2": 0.0}
    assert m.compute(stub.model, reqs, c) == [expected[str(i)] if str(i) in chosen else None for i in range(3)]
    d = m.details()["batch"]
    assert d["sampled"] == 2 and d["sample_drawn"] == 2 and d["population"] == 3 and d["sample_size_param"] == 2
    # the sample of a subset keeps the requests it shares with the run's sample
    assert set(sample_ids(["0", "1"], 2, 7)) >= set(chosen) & {"0", "1"}


def test_scalability_relative_is_undefined_when_no_single_edit_succeeds(stub, ctx, reqs):
    weak = stub.pm.editors.get("table_writer")({"strength": 0.0})   # edits change nothing
    c = ctx(phase="batch", editors=[weak])
    assert ScalabilityRelative().compute(stub.model, reqs, c) == [None] * 3
    assert Scalability().compute(stub.model, reqs, c) == [0.0] * 3


def test_failed_single_edits_are_left_out_and_counted(stub, ctx, reqs):
    broken = stub.pm.editors.get("table_writer")({"strength": float("nan")})   # the kernel rolls it back
    m = Scalability()
    assert m.compute(stub.model, reqs, ctx(phase="batch", editors=[broken])) == [None] * 3
    assert m.details()["batch"]["failed_single_edits"] == 3
    assert stub.model.stack == [] and not torch.isnan(stub.lm.table).any()


def test_scalability_without_editors_is_none(stub, ctx, reqs):
    m = Scalability()
    assert m.compute(stub.model, reqs, ctx(phase="batch")) == [None] * 3
    assert m.details()["batch"]["reason"] == "no editor configured"


def test_retainability_sequential_steps_of_one(stub, ctx, reqs, writer):
    c = ctx(editors=[writer], protocol=ProtocolSpec(mode="sequential", batch_size=1))
    m = Retainability()
    applied = []
    expected = {1: [None], 2: [-1.0, 0.0], 3: [-0.5, 0.0, 0.0]}
    for r in reqs:
        stub.model.edit(writer, [r])
        applied.append(r)
        c.phase, c.applied, c.num_edits = "batch", [r], 1
        assert m.compute(stub.model, [r], c) == [None]          # only checkpoints measure retention
        c.phase, c.applied, c.num_edits = "checkpoint", list(applied), len(applied)
        table = stub.lm.table.detach().clone()
        assert m.compute(stub.model, list(applied), c) == expected[len(applied)]
        assert len(stub.model.stack) == len(applied) and torch.equal(stub.lm.table, table)
    d = m.details()["checkpoint"]
    # Eq. 10 telescopes: ((0 + 1 + 1) / 3 - 1) / (3 - 1)
    assert d["retainability"] == pytest.approx(-1 / 6) and d["acc_first_step"] == 1.0 and d["num_edits"] == 3


def test_retainability_steps_are_batches(stub, ctx, reqs, writer):
    c = ctx(editors=[writer], protocol=ProtocolSpec(mode="sequential", batch_size=2))
    stub.model.edit(writer, reqs[:2])
    stub.model.edit(writer, reqs[2:])
    c.phase, c.applied, c.num_edits = "checkpoint", list(reqs), 3
    # first step {0, 1} alone: 0 lost, 1 kept -> Acc 0.5; now 0, 1, 1; two steps
    assert Retainability().compute(stub.model, reqs, c) == [-0.5, 0.5, 0.5]


def test_retainability_is_none_in_the_batch_protocol(stub, ctx, reqs, writer):
    c = ctx(phase="checkpoint", editors=[writer], protocol=ProtocolSpec(mode="batch", batch_size=1), num_edits=3)
    assert Retainability().compute(stub.model, reqs, c) == [None] * 3
    assert Retainability.protocols == ("sequential",)
