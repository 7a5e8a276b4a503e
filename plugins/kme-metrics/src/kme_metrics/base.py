"""What every kme-metrics metric shares: a scoring label that follows its params, per-phase
details for the run summary, and access to the unedited model.

The runner reads ``type(metric).scoring`` when it writes the summary. A metric whose scoring
mode is chosen through params (``accuracy`` with ``scoring: token``) therefore becomes an
instance of a small subclass carrying the chosen label, so the summary names the mode that
actually produced the numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from kme import Metric

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EvalContext

__all__ = ["KmeMetric", "unedited", "mean_or_none", "eval_batch_size", "regroup", "request_counters",
           "probe_means"]

T = TypeVar("T")

_VARIANTS: dict[tuple[type, str], type] = {}


def _variant(cls: type, label: str) -> type:
    """A subclass of ``cls`` whose class attribute ``scoring`` is ``label`` (cached)."""
    key = (cls, label)
    if key not in _VARIANTS:
        _VARIANTS[key] = type(cls.__name__, (cls,), {
            "scoring": label, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__})
    return _VARIANTS[key]


def mean_or_none(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def regroup(flat: list[T], sizes: Iterable[int]) -> list[list[T]]:
    """Cut the results of one batched call over every request's probes back into consecutive
    per-request groups of the given sizes."""
    out: list[list[T]] = []
    k = 0
    for n in sizes:
        out.append(flat[k:k + n])
        k += n
    return out


def request_counters(values: list[float | None]) -> dict[str, float]:
    """The per-request counters behind ``per_edit_mean``: how many requests got a value, and
    the sum of those values."""
    return {"requests": sum(v is not None for v in values),
            "requests_sum": sum(v for v in values if v is not None)}


def _ratio(c: dict[str, float], num: str, den: str) -> float | None:
    return c[num] / c[den] if c.get(den) else None


def probe_means(c: dict[str, float], *, unique: bool = False) -> dict[str, float | None]:
    """The pooled values of the probe counters (``requests``/``requests_sum``,
    ``probes``/``probes_sum`` and, with ``unique``, ``unique_probes``/``unique_sum``);
    ``None`` where nothing was counted."""
    out = {"per_edit_mean": _ratio(c, "requests_sum", "requests"),
           "pooled_over_probes": _ratio(c, "probes_sum", "probes")}
    if unique:
        out["pooled_over_unique_probes"] = _ratio(c, "unique_sum", "unique_probes")
    return out


def eval_batch_size(context: "EvalContext") -> int:
    """The pipeline's evaluation batch size (``protocol.eval_batch_size``)."""
    return max(1, int(getattr(context, "batch_size", 64) or 64))


@contextlib.contextmanager
def unedited(model: "EditedModel") -> Iterator[None]:
    """Run the base model: a no-op when no edit is applied (``prepare``, baselines, or already
    inside :meth:`EditedModel.suspended`), otherwise :meth:`EditedModel.suspended`."""
    if not model.stack:
        yield
        return
    with model.suspended():
        yield


class KmeMetric(Metric):
    """Base of the first-party metrics.

    Subclasses set ``equation`` (the survey equation or paper the value follows) and may
    override :meth:`scoring_label` when params choose the scoring mode. ``compute`` calls
    :meth:`record` with additive counters; :meth:`details` returns them per phase for the
    run summary (``summary.json`` -> ``metrics.<name>.details``).
    """

    equation: ClassVar[str] = ""

    def __init__(self, params: Any = None):
        super().__init__(params)
        label = self.scoring_label()
        if label != type(self).scoring:
            self.__class__ = _variant(type(self), label)
        self._details: dict[str, dict[str, Any]] = {}

    def scoring_label(self) -> str:
        """The scoring mode these params produce (default: the class attribute)."""
        return type(self).scoring

    # -- details ------------------------------------------------------------------------
    def record(self, context: "EvalContext", counters: dict[str, float], info: dict[str, Any] | None = None) -> None:
        """Keep what this call measured. Batch-phase counters add up over batches (each batch
        is a separate trial); baseline and checkpoint calls replace the previous ones (each
        checkpoint re-measures every edit so far)."""
        phase = context.phase
        prev = self._details.get(phase)
        if phase == "batch" and prev is not None:
            merged = {k: prev["counters"].get(k, 0) + v for k, v in counters.items()}
            merged.update({k: v for k, v in prev["counters"].items() if k not in counters})
            counters = merged
        entry = {"counters": dict(counters), "info": dict(info or {})}
        if context.phase in ("checkpoint", "final"):
            entry["info"]["num_edits"] = context.num_edits
        self._details[phase] = entry

    def derive(self, counters: dict[str, float]) -> dict[str, Any]:
        """Values computed from the counters (pooled means and the like)."""
        return {}

    def details(self, context: "EvalContext | None" = None) -> dict[str, Any]:
        """Scoring mode, equation and, per phase, what the calls in this process measured.

        Phases computed before a resume (e.g. a baseline loaded from ``baseline.json``) are
        not repeated here.
        """
        out: dict[str, Any] = {"scoring": type(self).scoring}
        if self.equation:
            out["equation"] = self.equation
        for phase, entry in self._details.items():
            out[phase] = {**entry["counters"], **self.derive(entry["counters"]), **entry["info"]}
        return out
