"""Run protocols: how a pipeline applies, evaluates and undoes its batches.

A protocol is a registered component (``kme_register_protocols``) that drives a
:class:`~kme.pipeline.session.RunSession`: the session does the work every protocol shares
(apply a batch with every editor, score it, write records, keep state for resume), the
protocol decides the order. The kernel ships two, registered through the hook like any
plugin's: ``batch`` (every batch on the unedited model, undone after scoring) and
``sequential`` (batches accumulate; retention of every edit so far at checkpoints).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from kme.components import Component, Params

if TYPE_CHECKING:  # pragma: no cover
    from kme.data import EditRequest
    from kme.pipeline.session import RunSession

__all__ = ["RunProtocol", "BatchProtocol", "SequentialProtocol"]


class RunProtocol(Component):
    """Base class of run protocols; subclass it, set ``name`` and implement :meth:`run`.

    ``kind`` says which protocol's metrics and editor capabilities apply: ``batch`` when
    every batch starts from the unedited model, ``sequential`` when edits accumulate (editors
    must declare ``capabilities.sequential``; metrics whose ``protocols`` list ``sequential``
    are scored). ``uses_checkpoints`` allows ``protocol.checkpoints`` in a pipeline.
    """

    kind_label: ClassVar[str] = "protocol"
    kind: ClassVar[Literal["batch", "sequential"]] = "batch"
    uses_checkpoints: ClassVar[bool] = False

    def run(self, session: "RunSession") -> None:
        """Apply, score and record every batch of ``session``; resume where it left off."""
        raise NotImplementedError(f"protocol {self.name!r} does not implement run()")


class BatchParams(Params):
    precompute: int = Field(32, ge=0, description="batches whose edits the first editor computes together ahead "
                                                  "(Editor.precompute; results equal one at a time); 0: each "
                                                  "batch alone")


class BatchProtocol(RunProtocol):
    name = "batch"
    description = ("every batch is applied to the unedited model, scored and undone: batches are independent "
                   "(the papers' single-edit and batch-edit tables)")
    Params = BatchParams

    def run(self, session: "RunSession") -> None:
        todo = [b for b in range(len(session.batches)) if b not in session.recorded]
        chunk: int = self.params.precompute  # type: ignore[attr-defined]
        for n, b in enumerate(session.progress(todo, "editing")):
            if chunk and n % chunk == 0:
                session.precompute(todo[n:n + chunk])
            batch = session.batches[b]
            result = session.apply(b, batch)
            values = session.score_batch(batch, result) if result.ok else {}
            session.model.undo()
            session.record(b, batch, result, values)
            session.save_cache()


class SequentialProtocol(RunProtocol):
    name = "sequential"
    description = ("batches are applied one after another and never undone; every edit so far is re-scored at "
                   "checkpoints (retention)")
    kind = "sequential"
    uses_checkpoints = True

    def run(self, session: "RunSession") -> None:
        start = session.restore_state()
        applied: list[EditRequest] = [r for bb in session.batches[:start] for r in bb]
        marks = session.checkpoint_marks()
        last = len(session.batches) - 1
        for b in session.progress(range(start, len(session.batches)), "editing"):
            batch = session.batches[b]
            result = session.apply(b, batch)
            values = {}
            if result.ok:
                applied.extend(batch)
                values = session.score_batch(batch, result)
            session.record(b, batch, result, values)
            if applied and (len(applied) in marks or b == last):
                session.checkpoint(b, applied)
            session.save_state(b)
            session.save_cache()
        session.write_retention()
