"""One run in progress: what every protocol needs, in one object.

:class:`RunSession` holds the loaded model, the configured components, the requests cut
into batches and the run folder, and offers the steps a protocol strings together: apply a
batch with every editor (all or nothing), score it, record it, re-score everything applied
so far (a checkpoint), and keep the state a resumed run starts from.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from kme.data import EditRecord, EditRequest
from kme.errors import ConfigError, KmeError, ModelLoadError, UnknownComponentError
from kme.progress import progress_enabled

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Dataset, Editor, Locator, Metric
    from kme.data import Location
    from kme.edited import EditedModel, EditHandle
    from kme.evaluation import EvalContext
    from kme.pipeline.protocols import RunProtocol
    from kme.pipeline.runner import RunDir
    from kme.pipeline.spec import PipelineSpec
    from kme.plugins import KmePluginManager

__all__ = ["Components", "BatchResult", "RunSession", "mean"]

log = structlog.get_logger("kme")

Values = dict[str, list[float | None]]


@dataclass
class Components:
    """The components a pipeline names, configured (``validate_components`` builds it)."""

    dataset: "Dataset"
    editors: list["Editor"]
    locator: "Locator | None"
    metrics: list["Metric"]
    protocol: "RunProtocol"


@dataclass
class BatchResult:
    """What applying one batch did: its handles, timings, location, or the error that stopped it."""

    handles: list["EditHandle"] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    location: "Location | None" = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def mean(xs: Iterable[float | None]) -> float | None:
    """Mean of the values that are numbers (``None`` and NaN are skipped)."""
    vals = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(vals) / len(vals) if vals else None


class RunSession:
    """The shared steps of a run; a :class:`~kme.RunProtocol` decides their order."""

    def __init__(self, *, spec: "PipelineSpec", pm: "KmePluginManager", components: Components,
                 model: "EditedModel", requests: list[EditRequest], run_dir: "RunDir", context: "EvalContext",
                 resume: bool = False, show_progress: bool = True):
        self.spec, self.pm, self.components, self.model = spec, pm, components, model
        self.requests, self.run_dir, self.context = requests, run_dir, context
        self.resume, self.show_progress = resume, show_progress
        bs = spec.protocol.batch_size
        #: the requests cut into the protocol's batches, in order
        self.batches: list[list[EditRequest]] = [requests[i: i + bs] for i in range(0, len(requests), bs)]
        #: indices of batches already in ``edits.jsonl`` (a resumed run skips or does not re-record them)
        self.recorded: set[int] = {r["batch"] for r in run_dir.read_jsonl(run_dir.edits)}
        #: retention rows written so far (sequential-like protocols)
        self.checkpoint_rows: list[dict[str, Any]] = run_dir.read_jsonl(run_dir.checkpoints)
        self.failures: list[dict[str, Any]] = []
        self.edit_s = 0.0
        self.eval_s = 0.0
        self.baseline: Values = {}
        self._base_of: dict[str, dict[str, float | None]] = {}
        self._cache_text = ""

    # -- components ------------------------------------------------------------------
    @property
    def editors(self) -> list["Editor"]:
        return self.components.editors

    @property
    def metrics(self) -> list["Metric"]:
        return self.components.metrics

    @property
    def ids(self) -> list[str]:
        return [str(r.case_id) for r in self.requests]

    def progress(self, items: Iterable[Any], desc: str) -> Iterator[Any]:
        """``items`` with a progress bar (hidden by ``--no-progress`` or for fewer than two)."""
        from tqdm.auto import tqdm

        items = list(items)
        return iter(tqdm(items, total=len(items), desc=desc, leave=False,
                         disable=not progress_enabled(self.show_progress) or len(items) < 2))

    # -- scoring ---------------------------------------------------------------------
    def evaluate(self, requests: list[EditRequest]) -> Values:
        """Every metric on ``requests`` through ``kme_evaluate``; a metric that does not
        apply to this protocol gets ``None`` per request."""
        ctx = self.context
        kind = type(self.components.protocol).kind
        out: Values = {}
        for m in self.metrics:
            if ctx.protocol is not None and ctx.protocol.mode not in type(m).protocols \
                    and kind not in type(m).protocols:
                out[m.name] = [None] * len(requests)
                continue
            vals = self.pm.hook.kme_evaluate(model=self.model, metric=m, requests=requests, context=ctx)
            if vals is None:
                raise KmeError(f"no plugin evaluated metric {m.name!r}")
            out[m.name] = [None if v is None else float(v) for v in vals]
        return out

    def prepare_baseline(self) -> None:
        """Prepare every metric on the unedited model and score the baseline once per run
        (read back from ``baseline.json`` on resume)."""
        rd, ctx, ids = self.run_dir, self.context, self.ids
        if rd.baseline.exists():
            saved = json.loads(rd.baseline.read_text())
            if saved.get("case_ids") != ids:
                raise ConfigError(f"{rd.baseline}: the dataset's requests changed since this run started",
                                  hint="resume with the same dataset options, or use a new --out")
            self.baseline, ctx.cache = saved["values"], saved["cache"]
        else:
            ctx.phase = "baseline"
            for m in self.metrics:
                if self.pm.hook.kme_prepare_metric(model=self.model, metric=m, requests=self.requests,
                                                   context=ctx) is None:
                    raise KmeError(f"no plugin prepared metric {m.name!r}")
            self.baseline = self.evaluate(self.requests)
            rd.baseline.write_text(json.dumps({"case_ids": ids, "values": self.baseline, "cache": ctx.cache},
                                              default=str))
        self._base_of = {cid: {m: self.baseline[m][i] for m in self.baseline} for i, cid in enumerate(ids)}
        if rd.cache.exists():  # what metrics added to their cache after the baseline
            ctx.cache.update(json.loads(rd.cache.read_text()))
        self._cache_text = json.dumps(ctx.cache, default=str, sort_keys=True)

    def score_batch(self, batch: list[EditRequest], result: BatchResult) -> Values:
        """Score the batch just applied (phase ``batch``)."""
        ctx = self.context
        t = time.perf_counter()
        ctx.phase, ctx.applied, ctx.num_edits = "batch", list(batch), len(batch)
        ctx.location = result.location
        values = self.evaluate(batch)
        self.eval_s += time.perf_counter() - t
        return values

    def checkpoint(self, b: int, applied: list[EditRequest]) -> None:
        """Re-score every request applied so far (retention) and append it to
        ``checkpoints.jsonl``; once per number of edits, also across a resume."""
        n = len(applied)
        if any(c["num_edits"] == n for c in self.checkpoint_rows):
            return
        ctx = self.context
        t = time.perf_counter()
        ctx.phase, ctx.applied, ctx.num_edits = "checkpoint", list(applied), n
        vals = self.evaluate(applied)
        self.eval_s += time.perf_counter() - t
        row = {"num_edits": n, "batch": b, "metrics": {m: mean(v) for m, v in vals.items()},
               "per_request": dict(vals), "case_ids": [str(r.case_id) for r in applied]}
        self.run_dir.append_jsonl(self.run_dir.checkpoints, [row])
        self.checkpoint_rows.append(row)

    def checkpoint_marks(self) -> set[int]:
        """The numbers of edits at which to checkpoint: ``protocol.checkpoints`` (plus the
        last), or about ten points spread over the run."""
        p, n = self.spec.protocol, len(self.requests)
        if p.checkpoints:
            return {c for c in p.checkpoints if c <= n} | {n}
        n_batches = len(self.batches)
        every = max(1, math.ceil(n_batches / 10))
        return {min(n, (b + 1) * p.batch_size) for b in range(n_batches) if (b + 1) % every == 0} | {n}

    # -- editing ---------------------------------------------------------------------
    def apply(self, b: int, batch: list[EditRequest]) -> BatchResult:
        """Locate (when the pipeline names a locator) and apply ``batch`` with every editor in
        order. A batch is applied whole or not at all: when an editor fails, the edits made
        so far are undone and the error is recorded; the run goes on. A mistake in the
        pipeline itself (it would fail every batch) stops the run."""
        res = BatchResult()
        locator = self.components.locator
        if locator is not None:
            res.location = self.pm.hook.kme_locate(model=self.model, locator=locator, requests=batch)
        for ed in self.editors:
            t = time.perf_counter()
            try:
                h = self.model.edit(ed, batch, location=res.location)
            except (ConfigError, UnknownComponentError, ModelLoadError):
                raise
            except Exception as e:  # NaN rolled back, or the editor raised: this batch failed
                for done in reversed(res.handles):
                    self.model.undo(done)
                res.handles = []
                res.error = e.message if isinstance(e, KmeError) else \
                    f"editor {ed.name!r} raised {type(e).__name__}: {str(e)[:300]}; the edit was rolled back"
                self.failures.append({"batch": b, "editor": ed.name, "error": res.error})
                return res
            res.handles.append(h)
            res.timing[f"{ed.name}_s"] = time.perf_counter() - t
            for k in ("peak_rss_mb", "cuda_peak_mb"):
                if k in h.meta:
                    res.timing[k] = max(res.timing.get(k, 0.0), h.meta[k])
        self.edit_s += sum(v for k, v in res.timing.items() if k.endswith("_s"))
        return res

    def precompute(self, indices: list[int]) -> None:
        """Let the first editor compute batches ``indices`` ahead on the model as it is now
        (unedited: call it between batches of an independent protocol). Skipped when the
        pipeline has a locator (its location is found per batch)."""
        if not self.editors or self.components.locator is not None or self.model.stack:
            return
        t = time.perf_counter()
        try:
            self.editors[0].precompute(self.model, [self.batches[b] for b in indices])
        except (ConfigError, UnknownComponentError, ModelLoadError):
            raise
        except Exception as e:  # each batch is then computed alone by apply(), as without it
            log.warning("editor.precompute_failed", editor=self.editors[0].name, error=f"{type(e).__name__}: {e}")
        self.edit_s += time.perf_counter() - t

    def record(self, b: int, batch: list[EditRequest], result: BatchResult, values: Values) -> None:
        """Append one :class:`~kme.EditRecord` per request of batch ``b`` to ``edits.jsonl``
        (a batch recorded before a resume is not written twice)."""
        if b in self.recorded:
            return
        loc = result.location.model_dump() if result.location is not None else None
        rows = [EditRecord(case_id=r.case_id, batch=b, editors=[e.name for e in self.editors],
                           metrics={m: values[m][i] for m in values} if values else {},
                           baseline=self._base_of[str(r.case_id)], timings=result.timing, location=loc,
                           decisions=[decisions(h, i) for h in result.handles] if result.ok else [],
                           error=result.error).model_dump(mode="json") for i, r in enumerate(batch)]
        self.run_dir.append_jsonl(self.run_dir.edits, rows)
        self.recorded.add(b)

    # -- state for resume ------------------------------------------------------------
    def save_cache(self) -> None:
        """Save what metrics added to their cache (only when it changed)."""
        text = json.dumps(self.context.cache, default=str, sort_keys=True)
        if text != self._cache_text:
            self.run_dir.cache.write_text(text)
            self._cache_text = text

    def save_state(self, b: int) -> None:
        """Save every edit applied so far as a patch, and that batches ``0..b`` are done."""
        st = self.run_dir.state
        self.model.save_patch(str(st))
        (st / "progress.json").write_text(json.dumps({"batches_applied": b + 1}))

    def restore_state(self) -> int:
        """On resume, re-apply the saved edits; returns the number of batches already applied."""
        st = self.run_dir.state
        if not (self.resume and (st / "manifest.json").exists()):
            return 0
        self.model.load_patch(str(st))
        start = int(json.loads((st / "progress.json").read_text())["batches_applied"])
        log.info("run.resumed", batches_applied=start)
        return start

    def write_retention(self) -> None:
        """``retention.json`` and ``retention.png`` from the checkpoints so far."""
        from kme.pipeline.report import write_retention

        write_retention(self.run_dir, self.checkpoint_rows, self.baseline, self.metrics)


def decisions(handle: Any, i: int) -> dict[str, Any]:
    """What an editor decided for request ``i`` of its batch: the handle's ``meta`` (layers
    and why, λ, statistics, timings...) with ``meta["per_request"][i]`` as ``request``."""
    meta = {k: v for k, v in handle.meta.items() if k != "per_request"}
    per = handle.meta.get("per_request")
    out: dict[str, Any] = {"editor": handle.editor_name, **meta}
    if isinstance(per, list) and len(per) == len(handle.requests):
        out["request"] = per[i]
    return json.loads(json.dumps(out, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x)))
