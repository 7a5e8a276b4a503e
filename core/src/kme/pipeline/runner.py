"""Running a pipeline: load, baseline, edit in batches, evaluate, write the run folder.

The run folder (``docs/run-folder.md``):

- ``config.json``      the resolved pipeline (defaults filled in)
- ``baseline.json``    per-request values of every metric on the unedited model, and the
                       metrics' pre-edit cache (computed once, reused on resume)
- ``edits.jsonl``      one :class:`~kme.data.EditRecord` per request, appended batch by batch
- ``checkpoints.jsonl`` sequential protocol: retention of every edit so far, per checkpoint
- ``retention.json`` / ``retention.png``  sequential protocol: the retention curve
- ``state/``           sequential protocol: a patch of every edit applied so far (resume)
- ``trained/``         editors that need training and were given no checkpoint, trained on the
                       dataset's train split (reused on resume)
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
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from kme.data import EditRequest
from kme.errors import ConfigError, KmeError
from kme.evaluation import EvalContext
from kme.logs import close_logging, configure_logging
from kme.pipeline.spec import PipelineSpec, validate_components
from kme.progress import progress as progress_scope

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Editor
    from kme.edited import EditedModel
    from kme.pipeline.session import Components
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
        self.trained = path / "trained"
        self.cache = path / "cache.json"
        self.retention_json = path / "retention.json"
        self.retention_png = path / "retention.png"
        #: set once the run's model has loaded; a run that fails before leaves nothing behind
        self.model_loaded = False

    def clear(self) -> None:
        """Remove the files of a previous run (only the ones a run writes)."""
        import shutil

        for f in (self.config, self.baseline, self.cache, self.edits, self.checkpoints, self.summary, self.report,
                  self.log, self.retention_json, self.retention_png):
            f.unlink(missing_ok=True)
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.trained, ignore_errors=True)

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


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_pipeline(spec: PipelineSpec, pm: "KmePluginManager", *, out_dir: str | Path | None = None,
                 resume: bool = False, overwrite: bool = False, source: str = "<pipeline>", progress: bool = True,
                 verbose: bool = False, model: "EditedModel | None" = None) -> dict[str, Any]:
    """Run ``spec`` and return the summary (also written to ``summary.json``).

    ``model``: an already loaded, unedited :class:`~kme.edited.EditedModel` of ``spec.model``
    (built with the same plugin manager) to use instead of loading one, e.g. to run many
    pipelines on one model (``kme sweep``). It must hold no edits, and every edit the run made
    is undone when it ends (finished or not), so the next run starts from the same weights."""
    if model is not None and (model.stack or model._hidden):
        raise KmeError(f"run_pipeline(model=...) needs an unedited model; this one holds {len(model.stack)} "
                       "edit(s)", hint="undo them first (model.undo())")
    comps = validate_components(spec, pm, source)
    run_path = Path(out_dir or spec.output or time.strftime("runs/%Y%m%d-%H%M%S"))
    rd = RunDir(run_path)
    config = spec.resolved()
    config["output"] = str(run_path)
    # what this run creates before the model is loaded: removed again if the load fails
    missing = [d for d in (run_path, *run_path.parents) if not d.exists()]
    fresh = [f for f in (rd.config, rd.log, run_path / ".lock") if not f.exists()]
    with lock_run_dir(run_path):
        try:
            return _locked_run(spec, pm, comps, rd, config, resume, overwrite, progress, verbose, source, model)
        except BaseException:
            if not rd.model_loaded:
                _remove_created(fresh, missing)
            raise
        finally:
            if model is not None and model.stack:
                model.undo()  # the caller's model goes back unedited


def _remove_created(files: list[Path], dirs: list[Path]) -> None:
    """Undo the start of a run that failed before its model loaded: delete the files it
    created and the folders it created that are now empty; never a file or folder that
    existed before, nor anything else in them."""
    for f in files:
        with contextlib.suppress(OSError):
            f.unlink(missing_ok=True)
    for d in dirs:  # innermost first
        try:
            d.rmdir()  # only if empty
        except OSError:
            break


def _locked_run(spec: PipelineSpec, pm: "KmePluginManager", comps: "Components", rd: RunDir,
                config: dict[str, Any], resume: bool, overwrite: bool, progress: bool, verbose: bool,
                source: str, model: "EditedModel | None" = None) -> dict[str, Any]:
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
            return _run(spec, pm, comps, rd, config, resume, progress, source, model)
    finally:
        close_logging()


def _resolve(spec: PipelineSpec, pm: "KmePluginManager", comps: "Components", model: "EditedModel",
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
        if type(ed).capabilities.needs_training and not ed.is_trained():
            _train(ed, comps, model, rd, where)
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
        "locator": plain(comps.locator, spec.locator.params) if comps.locator is not None and spec.locator
        else None,
        "metrics": [plain(m, ref.params) for m, ref in zip(comps.metrics, spec.metrics)],
        "dataset": plain(comps.dataset, spec.dataset.options),
        "protocol": plain(comps.protocol, spec.protocol.params),
    }
    saved = json.loads(rd.config.read_text()) if rd.config.exists() else {}
    if saved.get("resolved") is not None and saved["resolved"] != json.loads(json.dumps(resolved)):
        raise ConfigError(f"cannot resume {str(rd.path)!r}: the resolved params differ from the ones the run "
                          "started with (a preset, plugin default or the model changed)",
                          where=str(rd.config), hint="finish it with the same plugins, or start a new --out")
    saved.update({"resolved": resolved})
    rd.config.write_text(json.dumps(saved, indent=2, default=str))
    return editors, resolved


def _train(editor: "Editor", comps: "Components", model: "EditedModel", rd: RunDir, where: str) -> None:
    """Train ``editor`` on the dataset's train split into ``RUN/trained/<editor>/`` (once per
    run folder: a resumed run reuses it) and point its params at the result."""
    out = rd.trained / editor.name
    done = out / "kme-trained.json"
    if done.exists():
        updates = json.loads(done.read_text())["params"]
        log.info("editor.trained", editor=editor.name, reused=str(out))
    else:
        requests = list(comps.dataset.train_requests())
        if not requests:
            raise ConfigError(f"editor {editor.name!r} needs training and was given no trained checkpoint, and "
                              f"dataset {comps.dataset.name!r} has no train split to train it on",
                              where=f"{where}.params",
                              hint="name a trained checkpoint in the editor's params, or use a dataset with a "
                                   "train split (e.g. factworld)")
        log.info("editor.training", editor=editor.name, requests=len(requests), out=str(out))
        out.mkdir(parents=True, exist_ok=True)
        updates = editor.train(model, requests, str(out))
        done.write_text(json.dumps({"params": updates, "train_requests": len(requests)}, default=str))
    editor.params = type(editor).parse_params({**editor.params.model_dump(), **updates}, where=f"{where}.params")
    if editor.resolution is not None:
        editor.resolution.params = editor.params
        editor.resolution.sources.update({k: "trained" for k in updates})


def _run(spec: PipelineSpec, pm: "KmePluginManager", comps: "Components", rd: RunDir,
         config: dict[str, Any], resume: bool, progress: bool, source: str = "<pipeline>",
         preloaded: "EditedModel | None" = None) -> dict[str, Any]:
    """Load, configure, prepare the baseline, hand the session to the protocol, summarise."""
    from kme.models.loading import load_model
    from kme.pipeline.report import report, summarise
    from kme.pipeline.session import RunSession

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    log.info("run.start", run_dir=str(rd.path), resume=resume)
    pm.hook.kme_run_start(config=config, run_dir=str(rd.path))
    _seed_everything(spec.seed)

    # the dataset first: a bad record stops the run before a (possibly long) model load
    t0 = time.perf_counter()
    requests: list[EditRequest] = list(comps.dataset.load())
    if spec.protocol.num_edits is not None:
        requests = requests[: spec.protocol.num_edits]
    if not requests:
        raise ConfigError(f"dataset {spec.dataset.name!r} produced no requests", where=f"{source}: dataset",
                          hint="check its path/split/limit options")
    timings["load_dataset_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = preloaded if preloaded is not None else load_model(spec.model, pm)
    rd.model_loaded = True
    timings["load_model_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    comps.editors, config["resolved"] = _resolve(spec, pm, comps, model, rd, source)
    if any(type(e).capabilities.needs_training for e in comps.editors):
        timings["train_s"] = time.perf_counter() - t0
    model.check_fits(requests, where=f"{source}: dataset {spec.dataset.name!r}")

    ctx = EvalContext(protocol=spec.protocol, editors=comps.editors, locator=comps.locator, seed=spec.seed,
                      batch_size=spec.protocol.eval_batch_size, rng=random.Random(spec.seed))
    session = RunSession(spec=spec, pm=pm, components=comps, model=model, requests=requests, run_dir=rd,
                         context=ctx, resume=resume, show_progress=progress)
    t0 = time.perf_counter()
    session.prepare_baseline()
    timings["baseline_s"] = time.perf_counter() - t0

    comps.protocol.run(session)

    timings["edit_s"] = session.edit_s
    timings["eval_s"] = session.eval_s
    timings["total_s"] = time.perf_counter() - t_start
    for name, secs in ctx.timings.items():  # recorded by the guards plugin's hook wrappers
        timings[f"metric_{name}_s"] = secs
    summary = summarise(session, config, timings)
    rd.summary.write_text(json.dumps(summary, indent=2, default=str))
    rd.report.write_text(report(summary))
    log.info("run.end", run_dir=str(rd.path), seconds=round(timings["total_s"], 2))
    pm.hook.kme_run_end(summary=summary, run_dir=str(rd.path))
    return summary
