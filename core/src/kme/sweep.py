"""Sweeps: one base pipeline run over a grid of overrides (``kme sweep``, docs/sweeps.md).

A sweep file::

    base: pipeline.yaml            # a path (relative to this file) or an inline pipeline mapping
    grid:                          # every combination; keys are dotted override paths
      editors: [[{name: rome}], [{name: memit}]]
      protocol.num_edits: [1, 10]
      seed: [0, 1]
    points: []                     # optional: extra explicit points, each a mapping of overrides
    output: runs/my-sweep          # optional: the sweep folder (``--out`` wins)

Every point is a normal run folder under the sweep folder, named by its index and a slug of
its overrides (``003-editors=memit,protocol.num_edits=1,seed=1``); ``sweep.json`` in the
sweep folder indexes them. Re-running a sweep skips finished points (``summary.json``
exists) and resumes interrupted ones (``config.json`` but no ``summary.json``).

``jobs > 1`` runs points in that many worker processes (multiprocessing, spawn); every
worker, like the single-process loop, loads a model once and reuses it, unedited again after
each run, for every point with the same model spec.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kme.errors import ConfigError, KmeError, format_validation_error

if TYPE_CHECKING:  # pragma: no cover
    from kme.edited import EditedModel
    from kme.pipeline.spec import PipelineSpec
    from kme.plugins import KmePluginManager

__all__ = ["SweepSpec", "SweepPoint", "Sweep", "load_sweep", "expand_points", "point_folder", "run_sweep",
           "SweepFailedError", "SWEEP_VERSION"]

#: ``kme_sweep_version`` of the ``sweep.json`` this module writes.
SWEEP_VERSION = 1
INDEX = "sweep.json"
_SLUG_MAX = 80


class SweepSpec(BaseModel):
    """A sweep file (docs/sweeps.md)."""

    model_config = ConfigDict(extra="forbid")

    base: str | dict[str, Any]
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(default_factory=list)
    output: str | None = None

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, vals in v.items() if not vals]
        if empty:
            raise ValueError(f"grid key(s) {', '.join(empty)} list no values; give at least one")
        return v


@dataclass
class SweepPoint:
    """One point: its index, overrides (dotted key -> value) and run folder name."""

    index: int
    overrides: dict[str, Any]
    folder: str
    spec: "PipelineSpec | None" = field(default=None, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)  # the pipeline mapping, overrides applied


@dataclass
class Sweep:
    """A loaded sweep: the file's spec, the base pipeline mapping and the points."""

    source: str
    spec: SweepSpec
    base: dict[str, Any]
    points: list[SweepPoint]


class SweepFailedError(KmeError):
    """``kme sweep`` ran every point, and some failed (exit code 1; see ``sweep.json``)."""

    exit_code = 1


def expand_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The overrides of every point, in order: the grid's combinations (the first key varies
    slowest, the last fastest), then the explicit ``points``."""
    out: list[dict[str, Any]] = []
    if spec.grid:
        keys = list(spec.grid)
        for combo in itertools.product(*(spec.grid[k] for k in keys)):
            out.append(dict(zip(keys, combo)))
    out.extend(dict(p) for p in spec.points)
    return out


def _short(v: Any) -> str:
    if isinstance(v, dict):
        if "name" in v:
            return str(v["name"])
        return "+".join(f"{k}-{_short(x)}" for k, x in v.items()) or "none"
    if isinstance(v, list):
        return "+".join(_short(x) for x in v) or "none"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def point_folder(index: int, overrides: dict[str, Any], width: int = 3) -> str:
    """``003-editors=memit,protocol.num_edits=1,seed=1``: the index, then ``key=value`` per
    override (a component by its name, a list joined by ``+``); characters other than
    letters, digits and ``._=,+-`` become ``_``; a slug over 80 characters is cut and ends
    with a hash of the overrides."""
    slug = ",".join(f"{k}={_short(v)}" for k, v in overrides.items())
    slug = re.sub(r"[^A-Za-z0-9._=,+-]", "_", slug)
    if len(slug) > _SLUG_MAX:
        digest = hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
        slug = slug[: _SLUG_MAX - 9] + "-" + digest
    return f"{index:0{width}d}" + (f"-{slug}" if slug else "")


def load_sweep(path: str | Path, pm: "KmePluginManager | None" = None) -> Sweep:
    """Read sweep file ``path``, expand its points and validate each point's pipeline (the
    schema, and with ``pm`` every component and the model's devices) before anything runs.
    Every problem raises (exit code 2) naming the point and the override."""
    from kme.files import parse_yaml, read_text
    from kme.overrides import blame_overrides, load_pipeline_data, parse_with_overrides

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file {str(p)!r} does not exist")
    data = parse_yaml(read_text(p, what="sweep file"), str(p))
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping with keys base, grid, points; got {type(data).__name__}",
                          where=str(p))
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e), where=str(p), hint="see docs/sweeps.md for the sweep keys") \
            from None
    if isinstance(spec.base, str):
        base_path = (p.parent / spec.base)
        base = load_pipeline_data(base_path)
        if not isinstance(base, dict):
            raise ConfigError(f"the base pipeline must be a mapping, got {type(base).__name__}", where=str(base_path))
    else:
        base = spec.base
    overrides = expand_points(spec)
    if not overrides:
        raise ConfigError("the sweep has no points: give a grid or points", where=str(p))
    width = max(3, len(str(len(overrides) - 1)))
    points: list[SweepPoint] = []
    errors: list[KmeError] = []
    devices_checked: set[str] = set()
    for i, ov in enumerate(overrides):
        folder = point_folder(i, ov, width)
        source = f"{p} [{folder}]"
        try:
            from kme.overrides import apply_overrides

            pspec = parse_with_overrides(base, ov, source)
            pdata = apply_overrides(base, ov)
            if pm is not None:
                from kme.models.loading import check_model_devices
                from kme.pipeline.spec import validate_components

                try:
                    validate_components(pspec, pm, source)
                    key = pspec.model.model_dump_json()
                    if key not in devices_checked:
                        check_model_devices(pspec.model, where=source)
                        devices_checked.add(key)
                except KmeError as e:
                    raise blame_overrides(e, ov, source) from None
        except KmeError as e:
            errors.append(e)
            continue
        points.append(SweepPoint(i, ov, folder, pspec, pdata))
    if errors:
        from kme.pipeline.spec import PipelineErrors

        if len(errors) == 1:
            raise errors[0]
        raise PipelineErrors(errors, str(p))
    return Sweep(str(p), spec, base, points)


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def _index_doc(sweep: Sweep, entries: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {s: sum(e["status"] == s for e in entries) for s in ("complete", "failed", "pending")}
    return {
        "kme_sweep_version": SWEEP_VERSION,
        "source": sweep.source,
        "sweep": _jsonable(sweep.spec.model_dump(mode="json")),
        "base_pipeline": _jsonable(sweep.base),
        "counts": counts,
        "points": entries,
    }


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)


def _metric_values(summary: dict[str, Any]) -> dict[str, Any]:
    return {name: m.get("value") for name, m in summary.get("metrics", {}).items()}


def _same_sweep(saved: dict[str, Any], sweep: Sweep) -> list[str]:
    """What differs between saved index ``saved`` and ``sweep`` (empty: the same sweep)."""
    diff = []
    if saved.get("base_pipeline") != _jsonable(sweep.base):
        diff.append("the base pipeline")
    old = [(e.get("overrides"), e.get("folder")) for e in saved.get("points", [])]
    new = [(_jsonable(pt.overrides), pt.folder) for pt in sweep.points]
    if old != new:
        diff.append("the points (grid or points)")
    return diff


# -- running one point ------------------------------------------------------------------------

class _ModelCache:
    """One loaded model at a time, keyed by the model spec's JSON; reused while points ask
    for the same spec."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.model: "EditedModel | None" = None

    def get(self, spec: "PipelineSpec", pm: "KmePluginManager") -> "EditedModel":
        from kme.models.loading import load_model

        key = spec.model.model_dump_json()
        if self.key != key or self.model is None:
            self.model = None  # let the previous one go before the next loads
            self.key = None
            import gc

            gc.collect()
            self.model = load_model(spec.model, pm)
            self.key = key
        if self.model.stack:  # pragma: no cover - run_pipeline undoes every edit
            self.model.undo()
        return self.model


@dataclass
class _Task:
    index: int
    data: dict[str, Any]
    source: str
    run_dir: str
    resume: bool
    overwrite: bool
    quiet: bool = False
    verbose: bool = False
    progress: bool = False


def _run_point(task: _Task, pm: "KmePluginManager", cache: _ModelCache) -> dict[str, Any]:
    """Run one point; return ``{index, status, metrics, error, seconds}``."""
    from kme.logs import quiet as quiet_scope
    from kme.pipeline.runner import run_pipeline
    from kme.pipeline.spec import parse_pipeline
    from kme.progress import library_output, progress

    t0 = time.perf_counter()
    try:
        spec = parse_pipeline(task.data, task.source)
        with quiet_scope(task.quiet), progress(task.progress), library_output():
            model = cache.get(spec, pm)
            summary = run_pipeline(spec, pm, out_dir=task.run_dir, resume=task.resume, overwrite=task.overwrite,
                                   source=task.source, progress=task.progress, verbose=task.verbose, model=model)
        return {"index": task.index, "status": "complete", "metrics": _metric_values(summary), "error": None,
                "seconds": round(time.perf_counter() - t0, 3)}
    except KmeError as e:
        error = e.render()
    except Exception as e:  # noqa: BLE001 - one failed point must not stop the others
        error = f"{type(e).__name__}: {str(e)[:1000]}"
    return {"index": task.index, "status": "failed", "metrics": None, "error": error,
            "seconds": round(time.perf_counter() - t0, 3)}


# -- worker processes -------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _plugin_recipe(pm: "KmePluginManager") -> tuple[bool, list[Any]]:
    """How a worker process rebuilds ``pm``: whether to load entry points, and the plugins
    added explicitly (modules by name, other objects pickled)."""
    entry = False
    extra: list[Any] = []
    for name, info in pm.infos.items():
        if info.builtin:
            continue
        if info.distribution is not None:
            entry = True
            continue
        plugin = pm.get_plugin(name)
        if plugin is None:
            continue
        extra.append(("module", plugin.__name__) if isinstance(plugin, ModuleType) else ("object", plugin))
    return entry, extra


def _worker_init(entry: bool, extra: list[Any], threads: int) -> None:
    import importlib

    from kme.plugins import build_plugin_manager

    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    plugins = [importlib.import_module(x) if kind == "module" else x for kind, x in extra]
    _WORKER["pm"] = build_plugin_manager(plugins, load_entrypoints=entry)
    _WORKER["cache"] = _ModelCache()


def _worker_run(task: _Task) -> dict[str, Any]:
    return _run_point(task, _WORKER["pm"], _WORKER["cache"])


# -- the sweep --------------------------------------------------------------------------------

def run_sweep(path: str | Path, pm: "KmePluginManager", *, out_dir: str | Path | None = None, jobs: int = 1,
              overwrite: bool = False, progress: bool = False, quiet: bool = False, verbose: bool = False,
              echo: Callable[[str], None] | None = None, ray: str | None = None) -> dict[str, Any]:
    """Run (or resume) sweep file ``path``; return the index written to ``sweep.json``.

    ``jobs``: 1 runs the points in this process; N > 1 in N worker processes (spawn). A sweep
    folder whose ``sweep.json`` describes another sweep is refused unless ``overwrite`` (which
    also re-runs finished points). ``echo`` gets one line per finished point. A point that
    fails does not stop the others: it is ``failed`` in the index (``counts.failed``), with its
    error; the returned index also holds ``root``, the sweep folder.

    ``ray``: run the points as Ray tasks instead, on ``jobs`` actors (one model each):
    ``"local"`` starts a local Ray instance, anything else is a cluster address
    (``kme.sweep_ray``)."""
    from kme.pipeline.runner import lock_run_dir

    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if ray is not None:
        from kme.sweep_ray import _import_ray

        _import_ray()  # before any folder is made: the error says how to install it
    say = echo or (lambda _s: None)
    sweep = load_sweep(path, pm)
    stem = Path(path).stem
    root = Path(out_dir or sweep.spec.output or f"runs/{stem}")
    index = root / INDEX
    if root.exists() and not root.is_dir():
        raise ConfigError(f"sweep folder {str(root)!r} is a file")
    with lock_run_dir(root):
        if index.exists() and not overwrite:
            try:
                saved = json.loads(index.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ConfigError(f"cannot read {str(index)!r}: {e}", hint="pass --overwrite to start the sweep "
                                  "again") from None
            diff = _same_sweep(saved, sweep)
            if diff:
                raise ConfigError(f"sweep folder {str(root)!r} holds another sweep: {' and '.join(diff)} differ "
                                  f"from {sweep.source}", where=str(index),
                                  hint="pass --overwrite to replace it, or --out DIR for a new sweep folder")
        elif not index.exists() and not overwrite and (root / "config.json").exists():
            raise ConfigError(f"{str(root)!r} is a run folder, not a sweep folder",
                              hint="pass --out DIR for the sweep folder")
        entries: list[dict[str, Any]] = []
        tasks: list[_Task] = []
        for pt in sweep.points:
            rd = root / pt.folder
            entry: dict[str, Any] = {"index": pt.index, "folder": pt.folder, "overrides": _jsonable(pt.overrides),
                                     "status": "pending", "metrics": None, "error": None}
            summary_file, config_file = rd / "summary.json", rd / "config.json"
            if summary_file.exists() and not overwrite:
                try:
                    entry.update(status="complete", metrics=_metric_values(json.loads(summary_file.read_text())))
                    entries.append(entry)
                    continue
                except (OSError, json.JSONDecodeError):
                    pass  # a damaged summary: run the point again
            entries.append(entry)
            resume = config_file.exists() and not overwrite
            tasks.append(_Task(pt.index, pt.data, f"{sweep.source} [{pt.folder}]", str(rd.resolve() if ray is not None else rd), resume,
                               overwrite and config_file.exists(), quiet, verbose,
                               progress and jobs == 1 and ray is None))
        _write_json(index, _index_doc(sweep, entries))
        done = len(entries) - len(tasks)
        if done:
            say(f"{done} of {len(entries)} point(s) already complete")
        by_index = {e["index"]: e for e in entries}
        total = len(entries)

        def record(result: dict[str, Any]) -> None:
            nonlocal done
            e = by_index[result["index"]]
            e.update(status=result["status"], metrics=result["metrics"], error=result["error"])
            done += 1
            _write_json(index, _index_doc(sweep, entries))
            if result["status"] == "complete":
                vals = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in (result["metrics"] or {}).items())
                say(f"[{done}/{total}] {e['folder']}: complete in {result['seconds']:.1f}s  {vals}")
            else:
                say(f"[{done}/{total}] {e['folder']}: failed: {result['error']}")

        # points that share a model spec run one after another: each worker reloads rarely
        tasks.sort(key=lambda t: (json.dumps(t.data.get("model"), sort_keys=True, default=str), t.index))
        if tasks and ray is not None:
            from kme.sweep_ray import run_on_ray

            entry_points, extra = _plugin_recipe(pm)
            run_on_ray(tasks, address=ray, workers=jobs, entry=entry_points, extra=extra, root=root, record=record)
        elif tasks and jobs == 1:
            cache = _ModelCache()
            for t in tasks:
                record(_run_point(t, pm, cache))
        elif tasks:
            import multiprocessing

            entry_points, extra = _plugin_recipe(pm)
            n = min(jobs, len(tasks))
            threads = max(1, (os.cpu_count() or 1) // n)
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(n, initializer=_worker_init, initargs=(entry_points, extra, threads)) as pool:
                try:
                    for result in pool.imap_unordered(_worker_run, tasks, chunksize=1):
                        record(result)
                except BaseException:
                    pool.terminate()
                    raise
        doc = _index_doc(sweep, entries)
        _write_json(index, doc)
    doc["root"] = str(root)
    return doc
