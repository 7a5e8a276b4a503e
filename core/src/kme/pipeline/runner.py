"""Running a pipeline: load, baseline, edit in batches, evaluate, write the run folder.

The run folder (``docs/run-folder.md``):

- ``config.json``      the resolved pipeline (defaults filled in)
- ``baseline.json``    per-request values of every metric on the unedited model, and the
                       metrics' pre-edit cache (computed once, reused on resume)
- ``edits.jsonl``      one :class:`~kme.data.EditRecord` per request, appended batch by batch
- ``checkpoints.jsonl`` sequential protocol: retention of every edit so far, per checkpoint
- ``retention.json`` / ``retention.png``  sequential protocol: the retention curve
- ``state/``           sequential protocol: a patch of every edit applied so far (resume)
- ``summary.json``     the public summary (``docs/summary-format.md``)
- ``report.md``        a short human-readable report
- ``log.jsonl``        structured events
- ``.lock``            held (OS file lock) by the process running in the folder; holds its pid

``--resume`` skips finished batches (and, sequentially, re-applies the saved edits) so no
finished work is repeated or lost.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from kme.data import EditRecord, EditRequest, RunSummary
from kme.errors import ConfigError, EditFailedError, KmeError, ModelLoadError, UnknownComponentError
from kme.evaluation import EvalContext
from kme.logs import close_logging, configure_logging
from kme.pipeline.spec import PipelineSpec, validate_components
from kme.progress import progress as progress_scope
from kme.progress import progress_enabled

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Editor, Locator, Metric
    from kme.data import Location
    from kme.edited import EditedModel
    from kme.plugins import KmePluginManager

__all__ = ["run_pipeline", "RunDir"]

log = structlog.get_logger("kme")


class RunDir:
    """File layout of one run folder."""

    def __init__(self, path: Path):
        self.path = path
        self.config = path / "config.json"
        self.baseline = path / "baseline.json"
        self.edits = path / "edits.jsonl"
        self.checkpoints = path / "checkpoints.jsonl"
        self.summary = path / "summary.json"
        self.report = path / "report.md"
        self.log = path / "log.jsonl"
        self.state = path / "state"
        self.cache = path / "cache.json"
        self.retention_json = path / "retention.json"
        self.retention_png = path / "retention.png"

    def clear(self) -> None:
        """Remove the files of a previous run (only the ones a run writes)."""
        import shutil

        for f in (self.config, self.baseline, self.cache, self.edits, self.checkpoints, self.summary, self.report,
                  self.log, self.retention_json, self.retention_png):
            f.unlink(missing_ok=True)
        shutil.rmtree(self.state, ignore_errors=True)

    def holds_run(self) -> bool:
        return self.config.exists()

    @staticmethod
    def read_jsonl(path: Path) -> list[dict[str, Any]]:
        """Lines of a JSONL file; a truncated last line (interrupted write) is dropped."""
        if not path.exists():
            return []
        rows, good = [], []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
                good.append(line)
            except json.JSONDecodeError:
                break
        if len(good) != len(path.read_text().splitlines()):
            path.write_text("".join(g + "\n" for g in good))
        return rows

    @staticmethod
    def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
        with open(path, "a") as f:
            f.write("".join(json.dumps(r, default=str) + "\n" for r in rows))


@contextlib.contextmanager
def lock_run_dir(path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on run folder ``path`` for the whole run.

    Two processes appending to one ``edits.jsonl`` duplicate and reorder records, so a second
    run, ``--resume`` or ``--overwrite`` on a folder in use stops with the holder's pid. The
    lock is released by the OS when the process ends, even on ``kill -9``.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, as before
        yield
        return
    path.mkdir(parents=True, exist_ok=True)
    f = open(path / ".lock", "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise ConfigError(f"run folder {str(path)!r} is in use by another kme process (pid {holder})",
                              hint="wait for that run to finish, or write this one elsewhere "
                                                  "with --out DIR") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        f.close()  # closing the descriptor releases the lock


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not progress_enabled(enabled) or total < 2, leave=False)


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(vals) / len(vals) if vals else None


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _evaluate(pm: "KmePluginManager", model: "EditedModel", metrics: list["Metric"],
              requests: list[EditRequest], ctx: EvalContext) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for m in metrics:
        if ctx.protocol is not None and ctx.protocol.mode not in type(m).protocols:
            out[m.name] = [None] * len(requests)
            continue
        vals = pm.hook.kme_evaluate(model=model, metric=m, requests=requests, context=ctx)
        if vals is None:
            raise KmeError(f"no plugin evaluated metric {m.name!r}")
        out[m.name] = [None if v is None else float(v) for v in vals]
    return out


def run_pipeline(spec: PipelineSpec, pm: "KmePluginManager", *, out_dir: str | Path | None = None,
                 resume: bool = False, overwrite: bool = False, source: str = "<pipeline>", progress: bool = True,
                 verbose: bool = False) -> dict[str, Any]:
    """Run ``spec`` and return the summary (also written to ``summary.json``)."""
    comps = validate_components(spec, pm, source)
    run_path = Path(out_dir or spec.output or time.strftime("runs/%Y%m%d-%H%M%S"))
    rd = RunDir(run_path)
    config = spec.resolved()
    config["output"] = str(run_path)
    with lock_run_dir(run_path):
        return _locked_run(spec, pm, comps, rd, config, resume, overwrite, progress, verbose, source)


def _locked_run(spec: PipelineSpec, pm: "KmePluginManager", comps: dict[str, Any], rd: RunDir,
                config: dict[str, Any], resume: bool, overwrite: bool, progress: bool, verbose: bool,
                source: str) -> dict[str, Any]:
    run_path = rd.path
    if rd.holds_run() and overwrite:
        rd.clear()
    if rd.holds_run():
        if not resume:
            raise ConfigError(f"run folder {str(run_path)!r} already holds a run",
                              hint="pass --resume to continue it, or --out DIR to write a new run elsewhere")
        saved = json.loads(rd.config.read_text())
        diff = sorted(k for k in set(saved) | set(config)
                      if k not in ("output", "resolved") and saved.get(k) != config.get(k))
        if diff:
            raise ConfigError(f"cannot resume: the pipeline differs from the run in {str(run_path)!r} "
                              f"in {', '.join(diff)}", hint="resume with the same pipeline, or use a new --out")
    elif resume and run_path.exists() and any(p.name != ".lock" for p in run_path.iterdir()):
        raise ConfigError(f"nothing to resume in {str(run_path)!r}: it holds no config.json")
    run_path.mkdir(parents=True, exist_ok=True)
    prev = json.loads(rd.config.read_text()).get("resolved") if rd.holds_run() else None
    rd.config.write_text(json.dumps({**config, "resolved": prev} if prev else config, indent=2))
    configure_logging(rd.log, verbose=verbose)
    try:
        with progress_scope(progress):
            return _run(spec, pm, comps, rd, config, resume, progress, source)
    finally:
        close_logging()


def _resolve(spec: PipelineSpec, pm: "KmePluginManager", comps: dict[str, Any], model: "EditedModel",
             rd: RunDir, source: str) -> tuple[list["Editor"], dict[str, Any]]:
    """Configure each editor for the loaded model (explicit params > preset > defaults) and
    record every component's full params with the source of each in ``config.json``."""
    editors = []
    ident = model.identity
    rec_editors = []
    for i, ref in enumerate(spec.editors):
        where = f"{source}: editors[{i}]"
        ed = model.make_editor(ref.name, ref.params, preset=ref.preset, where=where)
        try:
            ed.check_model(model)
        except KmeError as e:
            raise type(e)(e.message, hint=e.hint, where=f"{where}.params" + (f".{e.where}" if e.where else "")) \
                from None
        editors.append(ed)
        assert ed.resolution is not None
        rec_editors.append({"name": ref.name, "plugin": pm.editors.owner(ref.name), **ed.resolution.record()})
        log.info("editor.configured", editor=ref.name, preset=ed.resolution.preset,
                 from_preset=sorted(k for k, v in ed.resolution.sources.items() if v.startswith("preset:")))

    def plain(comp: Any, explicit: dict[str, Any]) -> dict[str, Any]:
        values = comp.params.model_dump(mode="json")
        return {"name": comp.name, "params": values,
                "sources": {k: "params" if k in explicit else "default" for k in values}}

    resolved = {
        "model": {**ident.model_dump(), "source": spec.model.name},
        "editors": rec_editors,
        "locator": plain(comps["locator"], spec.locator.params) if comps["locator"] is not None and spec.locator
        else None,
        "metrics": [plain(m, ref.params) for m, ref in zip(comps["metrics"], spec.metrics)],
        "dataset": plain(comps["dataset"], spec.dataset.options),
    }
    saved = json.loads(rd.config.read_text()) if rd.config.exists() else {}
    if saved.get("resolved") is not None and saved["resolved"] != json.loads(json.dumps(resolved)):
        raise ConfigError(f"cannot resume {str(rd.path)!r}: the resolved params differ from the ones the run "
                          "started with (a preset, plugin default or the model changed)",
                          where=str(rd.config), hint="finish it with the same plugins, or start a new --out")
    saved.update({"resolved": resolved})
    rd.config.write_text(json.dumps(saved, indent=2, default=str))
    return editors, resolved


def _run(spec: PipelineSpec, pm: "KmePluginManager", comps: dict[str, Any], rd: RunDir,
         config: dict[str, Any], resume: bool, progress: bool, source: str = "<pipeline>") -> dict[str, Any]:
    from kme.models.loading import load_model

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    log.info("run.start", run_dir=str(rd.path), resume=resume)
    pm.hook.kme_run_start(config=config, run_dir=str(rd.path))
    _seed_everything(spec.seed)

    # the dataset first: a bad record stops the run before a (possibly long) model load
    t0 = time.perf_counter()
    requests: list[EditRequest] = list(comps["dataset"].load())
    if spec.protocol.num_edits is not None:
        requests = requests[: spec.protocol.num_edits]
    if not requests:
        raise ConfigError(f"dataset {spec.dataset.name!r} produced no requests", where=f"{source}: dataset",
                          hint="check its path/split/limit options")
    timings["load_dataset_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = load_model(spec.model, pm)
    timings["load_model_s"] = time.perf_counter() - t0
    comps["editors"], config["resolved"] = _resolve(spec, pm, comps, model, rd, source)
    model.check_fits(requests, where=f"{source}: dataset {spec.dataset.name!r}")

    editors: list[Editor] = comps["editors"]
    metrics: list[Metric] = comps["metrics"]
    locator: Locator | None = comps["locator"]
    ctx = EvalContext(protocol=spec.protocol, editors=editors, locator=locator, seed=spec.seed,
                      batch_size=spec.protocol.eval_batch_size, rng=random.Random(spec.seed))

    # -- baseline (and the metrics' pre-edit cache), once per run --------------------------
    t0 = time.perf_counter()
    ids = [str(r.case_id) for r in requests]
    if rd.baseline.exists():
        saved = json.loads(rd.baseline.read_text())
        if saved.get("case_ids") != ids:
            raise ConfigError(f"{rd.baseline}: the dataset's requests changed since this run started",
                              hint="resume with the same dataset options, or use a new --out")
        baseline, ctx.cache = saved["values"], saved["cache"]
    else:
        ctx.phase = "baseline"
        for m in metrics:
            m.prepare(model, requests, ctx)
        baseline = _evaluate(pm, model, metrics, requests, ctx)
        rd.baseline.write_text(json.dumps({"case_ids": ids, "values": baseline, "cache": ctx.cache}, default=str))
    timings["baseline_s"] = time.perf_counter() - t0
    base_of = {cid: {m: baseline[m][i] for m in baseline} for i, cid in enumerate(ids)}
    if rd.cache.exists():  # what metrics added to their cache after the baseline
        ctx.cache.update(json.loads(rd.cache.read_text()))
    last_cache = [json.dumps(ctx.cache, default=str, sort_keys=True)]

    def save_cache() -> None:
        text = json.dumps(ctx.cache, default=str, sort_keys=True)
        if text != last_cache[0]:
            rd.cache.write_text(text)
            last_cache[0] = text

    bs = spec.protocol.batch_size
    batches = [requests[i: i + bs] for i in range(0, len(requests), bs)]
    done = {r["batch"] for r in RunDir.read_jsonl(rd.edits)}
    edit_s = eval_s = 0.0
    failures: list[dict[str, Any]] = []

    def apply_batch(b: int, batch: list[EditRequest]) -> tuple[dict[str, float], dict | None, str | None]:
        nonlocal edit_s
        location = None
        if locator is not None:
            location = pm.hook.kme_locate(model=model, locator=locator, requests=batch)
        timing: dict[str, float] = {}
        made = []
        decided.clear()
        for ed in editors:
            t = time.perf_counter()
            try:
                h = model.edit(ed, batch, location=location)
            except (ConfigError, UnknownComponentError, ModelLoadError):
                raise  # the pipeline itself is wrong: every batch would fail the same way
            except Exception as e:  # NaN rolled back, or the editor raised: this batch failed, the run goes on
                for done_h in reversed(made):  # a batch is applied whole or not at all
                    model.undo(done_h)
                msg = e.message if isinstance(e, KmeError) else \
                    f"editor {ed.name!r} raised {type(e).__name__}: {str(e)[:300]}; the edit was rolled back"
                failures.append({"batch": b, "editor": ed.name, "error": msg})
                return timing, location.model_dump() if location else None, msg
            made.append(h)
            decided.append(h)
            timing[f"{ed.name}_s"] = time.perf_counter() - t
            for k in ("peak_rss_mb", "cuda_peak_mb"):
                if k in h.meta:
                    timing[k] = max(timing.get(k, 0.0), h.meta[k])
        edit_s += sum(v for k, v in timing.items() if k.endswith("_s"))
        return timing, location.model_dump() if location else None, None

    decided: list[Any] = []  # the handles of the batch being recorded

    def records(b: int, batch: list[EditRequest], values: dict[str, list[float | None]],
                timing: dict[str, float], location: dict | None, error: str | None) -> list[dict[str, Any]]:
        return [EditRecord(case_id=r.case_id, batch=b, editors=[e.name for e in editors],
                           metrics={m: values[m][i] for m in values} if values else {},
                           baseline=base_of[str(r.case_id)], timings=timing, location=location,
                           decisions=[_decisions(h, i) for h in decided] if error is None else [],
                           error=error).model_dump(mode="json") for i, r in enumerate(batch)]

    checkpoint_rows = RunDir.read_jsonl(rd.checkpoints)
    if spec.protocol.mode == "batch":
        todo = [b for b in range(len(batches)) if b not in done]
        for b in _progress(todo, len(todo), "editing", progress):
            batch = batches[b]
            timing, location, error = apply_batch(b, batch)
            values: dict[str, list[float | None]] = {}
            if error is None:
                t = time.perf_counter()
                ctx.phase, ctx.applied, ctx.num_edits = "batch", list(batch), len(batch)
                ctx.location = kme_location(location)
                values = _evaluate(pm, model, metrics, batch, ctx)
                eval_s += time.perf_counter() - t
            model.undo()
            RunDir.append_jsonl(rd.edits, records(b, batch, values, timing, location, error))
            save_cache()
    else:
        checkpoints = _checkpoints(spec, len(requests), bs)
        start = 0
        if resume and (rd.state / "manifest.json").exists():
            model.load_patch(str(rd.state))
            start = json.loads((rd.state / "progress.json").read_text())["batches_applied"]
            log.info("run.resumed", batches_applied=start)
        applied: list[EditRequest] = [r for bb in batches[:start] for r in bb]
        seen_ckpt = {c["num_edits"] for c in checkpoint_rows}
        for b in _progress(range(start, len(batches)), len(batches) - start, "editing", progress):
            batch = batches[b]
            timing, location, error = apply_batch(b, batch)
            values = {}
            if error is None:
                applied.extend(batch)
                t = time.perf_counter()
                ctx.phase, ctx.applied, ctx.num_edits = "batch", list(batch), len(batch)
                ctx.location = kme_location(location)
                values = _evaluate(pm, model, metrics, batch, ctx)
                eval_s += time.perf_counter() - t
            if b not in done:
                RunDir.append_jsonl(rd.edits, records(b, batch, values, timing, location, error))
            n = len(applied)
            if (n in checkpoints or b == len(batches) - 1) and n not in seen_ckpt and applied:
                t = time.perf_counter()
                ctx.phase, ctx.applied, ctx.num_edits = "checkpoint", list(applied), n
                vals = _evaluate(pm, model, metrics, applied, ctx)
                eval_s += time.perf_counter() - t
                row = {"num_edits": n, "batch": b, "metrics": {m: _mean(v) for m, v in vals.items()},
                       "per_request": {m: v for m, v in vals.items()},
                       "case_ids": [str(r.case_id) for r in applied]}
                RunDir.append_jsonl(rd.checkpoints, [row])
                checkpoint_rows.append(row)
                seen_ckpt.add(n)
            model.save_patch(str(rd.state))
            (rd.state / "progress.json").write_text(json.dumps({"batches_applied": b + 1}))
            save_cache()
        _write_retention(rd, checkpoint_rows, baseline, ids, metrics)

    timings["edit_s"] = edit_s
    timings["eval_s"] = eval_s
    timings["total_s"] = time.perf_counter() - t_start
    for name, secs in ctx.timings.items():  # recorded by the kme_evaluate guard wrapper
        timings[f"metric_{name}_s"] = secs
    summary = _summarise(spec, rd, config, metrics, baseline, ids, checkpoint_rows, timings, failures,
                         len(batches), ctx)
    rd.summary.write_text(json.dumps(summary, indent=2, default=str))
    rd.report.write_text(_report(summary))
    log.info("run.end", run_dir=str(rd.path), seconds=round(timings["total_s"], 2))
    pm.hook.kme_run_end(summary=summary, run_dir=str(rd.path))
    return summary


def _decisions(handle: Any, i: int) -> dict[str, Any]:
    """What an editor decided for request ``i`` of its batch: the handle's ``meta`` (layers
    and why, λ, statistics, timings...) with ``meta["per_request"][i]`` as ``request``."""
    meta = {k: v for k, v in handle.meta.items() if k != "per_request"}
    per = handle.meta.get("per_request")
    out: dict[str, Any] = {"editor": handle.editor_name, **meta}
    if isinstance(per, list) and len(per) == len(handle.requests):
        out["request"] = per[i]
    return json.loads(json.dumps(out, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x)))


def kme_location(location: dict | None) -> "Location | None":
    from kme.data import Location

    return Location.model_validate(location) if location else None


def _checkpoints(spec: PipelineSpec, n: int, bs: int) -> set[int]:
    if spec.protocol.checkpoints:
        return {c for c in spec.protocol.checkpoints if c <= n} | {n}
    n_batches = math.ceil(n / bs)
    every = max(1, math.ceil(n_batches / 10))  # about ten points on the curve
    return {min(n, (b + 1) * bs) for b in range(n_batches) if (b + 1) % every == 0} | {n}


def _summarise(spec: PipelineSpec, rd: RunDir, config: dict[str, Any], metrics: list["Metric"],
               baseline: dict[str, list[float | None]], ids: list[str], checkpoint_rows: list[dict[str, Any]],
               timings: dict[str, float], failures: list[dict[str, Any]], n_batches: int,
               ctx: EvalContext) -> dict[str, Any]:
    from kme.versions import package_versions

    rows = RunDir.read_jsonl(rd.edits)
    ok = [r for r in rows if r.get("error") is None]
    failed = [r for r in rows if r.get("error") is not None]
    for r in failed:
        if not any(f.get("batch") == r["batch"] for f in failures):
            failures.append({"batch": r["batch"], "error": r["error"]})
    out: dict[str, dict[str, Any]] = {}
    final = checkpoint_rows[-1] if (spec.protocol.mode == "sequential" and checkpoint_rows) else None
    for m in metrics:
        immediate = _mean([r["metrics"].get(m.name) for r in ok])
        entry: dict[str, Any] = {
            "value": final["metrics"].get(m.name) if final else immediate,
            "baseline": _mean(baseline.get(m.name, [])),
            "scoring": m.scoring,
            "n": sum(1 for r in ok if r["metrics"].get(m.name) is not None) if not final else
                 sum(1 for v in final["per_request"].get(m.name, []) if v is not None),
            "higher_is_better": m.higher_is_better,
        }
        if final:
            entry["immediate"] = immediate
        details = getattr(m, "details", None)
        if callable(details):
            extra = details(ctx)
            if extra:
                entry["details"] = extra
        out[m.name] = entry
    summary = RunSummary(
        status="complete",
        metrics=out,
        config=config,
        versions=package_versions(),
        timings={k: round(v, 4) for k, v in timings.items()},
        counts={"requests": len(ids), "batches": n_batches, "edited": len(ok), "failed": len(failed)},
        failures=failures,
    )
    return summary.model_dump(mode="json")


def _write_retention(rd: RunDir, rows: list[dict[str, Any]], baseline: dict[str, list[float | None]],
                     ids: list[str], metrics: list["Metric"]) -> None:
    data = {
        "checkpoints": [{"num_edits": r["num_edits"], "metrics": r["metrics"]} for r in rows],
        "baseline": {m: _mean(v) for m, v in baseline.items()},
    }
    rd.retention_json.write_text(json.dumps(data, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        log.warning("retention.no_plot", reason="matplotlib is not installed")
        return
    xs = [r["num_edits"] for r in rows]
    shown = [m for m in metrics if any(r["metrics"].get(m.name) is not None for r in rows)]
    if not shown:
        return
    cols = min(3, len(shown))
    nrows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, m in zip(axes.flat, shown):  # one panel per metric: scales differ (bits vs rates)
        ys = [r["metrics"].get(m.name) for r in rows]
        ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o")
        base = data["baseline"].get(m.name)
        if base is not None:
            ax.axhline(base, color="grey", linestyle="--", linewidth=1, label="unedited")
            ax.legend(fontsize=7)
        ax.set_title(m.name, fontsize=9)
        ax.set_xlabel("edits applied", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle("Retention over every edit so far (sequential editing)", fontsize=10)
    fig.tight_layout()
    fig.savefig(rd.retention_png, dpi=100)
    plt.close(fig)


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _report(summary: dict[str, Any]) -> str:
    c = summary["config"]
    eds = ", ".join(e["name"] for e in c["editors"]) or "(none: unedited model)"
    lines = [
        "# kme run report", "",
        f"- model: `{c['model']['name']}`",
        f"- dataset: `{c['dataset']['name']}` ({summary['counts']['requests']} requests)",
        f"- editors: {eds}",
        f"- protocol: {c['protocol']['mode']}, batch size {c['protocol']['batch_size']}",
        f"- edited: {summary['counts']['edited']}, failed: {summary['counts']['failed']}",
        "",
        "| metric | value | baseline (unedited) | scoring | n | higher is better |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in summary["metrics"].items():
        lines.append(f"| {name} | {_fmt(m['value'])} | {_fmt(m['baseline'])} | {m['scoring']} | {m['n']} | "
                     f"{'yes' if m['higher_is_better'] else 'no'} |")
    if c["protocol"]["mode"] == "sequential":
        lines += ["", "Sequential protocol: *value* is measured after the last edit over every edit "
                      "(retention); the curve is in retention.json / retention.png."]
    t = summary["timings"]
    lines += ["", f"Time: {t.get('total_s', 0):.1f} s total, {t.get('edit_s', 0):.1f} s editing, "
                  f"{t.get('eval_s', 0):.1f} s evaluating, {t.get('baseline_s', 0):.1f} s baseline."]
    if summary["failures"]:
        lines += ["", "## Failures", ""] + [f"- batch {f['batch']}: {f['error']}" for f in summary["failures"]]
    return "\n".join(lines) + "\n"
