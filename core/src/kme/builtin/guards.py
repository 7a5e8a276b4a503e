"""Cross-cutting concerns as hook wrappers: timing, peak memory, structured logs, NaN guard.

Every editor and metric gets these without writing a line: they wrap ``kme_edit`` and
``kme_evaluate`` for all plugins.
"""

from __future__ import annotations

import resource
import time
from typing import TYPE_CHECKING, Any

import structlog

from kme import hookimpl
from kme.errors import EditFailedError

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Editor, Metric
    from kme.data import EditRequest, Location
    from kme.edited import EditedModel
    from kme.evaluation import EvalContext

log = structlog.get_logger("kme")

#: Edit prompts run through the edited model after each edit to check its outputs are finite.
_PROBE_PROMPTS = 4


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cuda_reset(model: "EditedModel") -> bool:
    import torch

    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model.device)
        return True
    return False


def _cuda_peak_mb(model: "EditedModel") -> float:
    import torch

    return torch.cuda.max_memory_allocated(model.device) / 2**20


@hookimpl(wrapper=True)
def kme_edit(model: "EditedModel", editor: "Editor", requests: list["EditRequest"],
             location: "Location | None") -> Any:
    cuda = _cuda_reset(model)
    t0 = time.perf_counter()
    try:
        handle = yield
    except Exception as e:
        log.warning("edit.failed", editor=editor.name, n_requests=len(requests), error=str(e))
        raise
    elapsed = time.perf_counter() - t0
    if handle is None:
        return handle
    bad = model.check_finite(handle)
    if not bad and handle.kind != "memory" and (handle.deltas or handle.state):
        # finite weights can still overflow in the forward pass (a huge but finite delta)
        bad = [] if model.outputs_finite([r.text for r in requests[:_PROBE_PROMPTS]]) else ["outputs"]
    if bad:
        model.rollback(handle)
        log.warning("edit.rolled_back", editor=editor.name, reason="non-finite weights or state", params=bad[:5])
        if bad == ["outputs"]:
            what = "the model's outputs on its edit prompts (its weights are finite but overflow)"
        else:
            kind = "parameter(s)" if all(":" not in b and "[" not in b for b in bad) else "parameter(s)/state"
            what = f"{len(bad)} {kind} ({', '.join(bad[:3])})"
        raise EditFailedError(
            f"editor {editor.name!r} produced NaN/inf in {what}; the edit was rolled back",
            hint="lower the learning rate / clamp norm, or check the request's targets",
        )
    handle.meta["edit_seconds"] = elapsed
    handle.meta["peak_rss_mb"] = _peak_rss_mb()
    if cuda:
        handle.meta["cuda_peak_mb"] = _cuda_peak_mb(model)
    log.info("edit.applied", editor=editor.name, n_requests=len(requests), seconds=round(elapsed, 4),
             params_changed=len(handle.deltas), memory_items=len(handle.memory))
    return handle


def _timed_metric(key: str, event: str, metric: "Metric", requests: list["EditRequest"],
                  context: "EvalContext") -> Any:
    """The body of both metric wrappers: time the wrapped call into ``context.timings[key]``."""
    t0 = time.perf_counter()
    result = yield
    elapsed = time.perf_counter() - t0
    context.timings[key] = context.timings.get(key, 0.0) + elapsed
    log.debug(event, metric=metric.name, phase=context.phase, n=len(requests), seconds=round(elapsed, 4))
    return result


@hookimpl(wrapper=True)
def kme_prepare_metric(model: "EditedModel", metric: "Metric", requests: list["EditRequest"],
                       context: "EvalContext") -> Any:
    return (yield from _timed_metric(f"{metric.name}_prepare", "metric.prepared", metric, requests, context))


@hookimpl(wrapper=True)
def kme_evaluate(model: "EditedModel", metric: "Metric", requests: list["EditRequest"],
                 context: "EvalContext") -> Any:
    return (yield from _timed_metric(metric.name, "metric.computed", metric, requests, context))
