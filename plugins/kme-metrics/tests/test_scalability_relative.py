"""Survey Eq. 12 divides Eq. 11 by the mean single-edit accuracy: a case where that mean is
below 1, so that the division shows.

Same stub as ``test_protocol.py``: applied together, request 1 overwrites request 0 (shared
prompt); request 2's prompt is made to prefer another token so strongly that its edit fails
even alone. Single-edit accuracies 1, 1, 0 (mean 2/3); after the batch 0, 1, 0.
"""

from __future__ import annotations

import pytest
import torch

from kme import EditRequest
from kme.pipeline.spec import ProtocolSpec
from kme_metrics.protocol import Scalability, ScalabilityRelative

P1 = "The capital of France is"
P2 = "Bob Jones speaks"


def test_eq12_divides_by_a_mean_single_edit_accuracy_below_one(stub, ctx):
    mk = lambda i, p, t: EditRequest(case_id=i, prompt=p, subject=p.split()[1], target_new=t)  # noqa: E731
    reqs = [mk(0, P1, " Rome"), mk(1, P1, " Paris"), mk(2, P2, " Rome")]
    first = stub.target(P2, " Rome")[0]
    rival = next(t for t in range(stub.V) if t != first)
    with torch.no_grad():
        stub.lm.table[stub.last(P2), rival] = 1000.0   # no edit of strength ~12 overcomes this
    writer = stub.pm.editors.get("table_writer")()
    c = ctx(phase="baseline", editors=[writer], protocol=ProtocolSpec(mode="batch", batch_size=3))
    sca, rel = Scalability(), ScalabilityRelative()
    sca.prepare(stub.model, reqs, c)
    rel.prepare(stub.model, reqs, c)
    stub.model.edit(writer, reqs)
    c.phase, c.applied, c.num_edits = "batch", list(reqs), 3

    eq11 = sca.compute(stub.model, reqs, c)
    assert eq11 == [1.0, 0.0, 0.0]                  # single 1, 1, 0 - together 0, 1, 0
    eq12 = rel.compute(stub.model, reqs, c)
    assert eq12 == pytest.approx([1.5, 0.0, 0.0])   # Eq. 11 / (2/3)
    d = rel.details()["batch"]
    assert d["sampled"] == 3 and d["failed_single_edits"] == 0
    assert d["mean_single_edit_accuracy"] == pytest.approx(2 / 3)
    assert d["mean_accuracy_after_all"] == pytest.approx(1 / 3)
    assert d["pooled_eq11"] == pytest.approx(1 / 3)
    assert d["pooled_eq12"] == pytest.approx(0.5)  # (2/3 - 1/3) / (2/3)
    assert sum(eq12) / 3 == pytest.approx(d["pooled_eq12"])   # the per-request values average to the pooled one
