"""Default implementations of the operational hooks: call the registered component.

Registered first, so a third-party ``tryfirst`` implementation can answer before these and a
``wrapper=True`` implementation sees every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kme import hookimpl
from kme.errors import KmeError

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Editor, Locator, Metric
    from kme.data import EditRequest, Location, MemoryHit
    from kme.edited import EditedModel, EditHandle
    from kme.evaluation import EvalContext


@hookimpl(trylast=True)
def kme_locate(model: "EditedModel", locator: "Locator", requests: list["EditRequest"]) -> "Location":
    return locator.locate(model, requests)


@hookimpl(trylast=True)
def kme_edit(model: "EditedModel", editor: "Editor", requests: list["EditRequest"],
             location: "Location | None") -> "EditHandle":
    if not type(editor).capabilities.batch and len(requests) > 1:
        raise KmeError(f"editor {editor.name!r} edits one request at a time, got a batch of {len(requests)}",
                       hint="set protocol.batch_size: 1")
    handle = editor.apply(model, requests, location)
    if handle is None:
        raise KmeError(f"editor {editor.name!r} returned no handle from apply()")
    return handle


@hookimpl
def kme_memory_lookup(model: "EditedModel", prompts: list[str]) -> "list[MemoryHit]":
    hits: list[MemoryHit] = []
    for h in model.stack:
        if h.editor is not None and h.kind == "memory":
            hits.extend(h.editor.lookup(model, h, prompts))
    return hits


@hookimpl(trylast=True)
def kme_prepare_metric(model: "EditedModel", metric: "Metric", requests: list["EditRequest"],
                       context: "EvalContext") -> bool:
    metric.prepare(model, requests, context)
    return True


@hookimpl(trylast=True)
def kme_evaluate(model: "EditedModel", metric: "Metric", requests: list["EditRequest"],
                 context: "EvalContext") -> list[float | None]:
    values = metric.compute(model, requests, context)
    if len(values) != len(requests):
        raise KmeError(f"metric {metric.name!r} returned {len(values)} values for {len(requests)} requests")
    return values
