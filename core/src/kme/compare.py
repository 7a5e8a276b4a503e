"""``kme compare``: one row per run, metrics with their 95% intervals beside the unedited
baseline, and only the config keys that differ between the runs (``docs/compare.md``)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import click

from kme.errors import KmeError

__all__ = ["RunInfo", "Comparison", "expand_paths", "load_runs", "flatten_config", "compare_runs",
           "render", "compare_cmd", "FORMATS", "MARKER"]

FORMATS = ("table", "csv", "json", "markdown")
MARKER = "*"
EXCLUDED_KEYS = ("output", "resolved")


@dataclass
class RunInfo:
    """One finished run: its folder, the label it is shown under and its ``summary.json``."""

    path: Path
    label: str
    summary: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.summary.get("config") or {}


def _is_run(p: Path) -> bool:
    return (p / "summary.json").is_file()


def _looks_like_run(p: Path) -> bool:
    """A run folder, finished or not (``config.json`` is written first)."""
    return any((p / n).exists() for n in ("summary.json", "config.json", "edits.jsonl"))


def expand_paths(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """``(run folder, label)`` for each argument: a run folder as itself; a sweep folder (one with
    ``sweep.json``, or any folder whose subfolders hold ``summary.json``) as its runs, in name order.
    A run folder without ``summary.json`` is a :class:`KmeError` (exit 2) naming it."""
    out: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        label = str(raw)
        if not p.is_dir():
            raise KmeError(f"{p}: no such run or sweep folder", where="kme compare",
                           hint="pass run folders (holding summary.json) or sweep folders")
        if _is_run(p):
            out.append((p, label))
            continue
        subs = sorted((d for d in p.iterdir() if d.is_dir()), key=lambda d: d.name)
        runs = [d for d in subs if _is_run(d)]
        unfinished = [d for d in subs if _looks_like_run(d) and not _is_run(d)]
        if (p / "sweep.json").is_file() or runs:
            if unfinished:
                raise KmeError(f"{unfinished[0]}: no summary.json (the run did not finish)", where="kme compare",
                               hint="finish it (kme run --resume) or leave this folder out")
            if not runs:
                raise KmeError(f"{p}: sweep folder without finished runs (no subfolder holds summary.json)",
                               where="kme compare", hint="run the sweep first")
            out += [(d, f"{label.rstrip('/')}/{d.name}") for d in runs]
            continue
        raise KmeError(f"{p}: no summary.json (not a finished run folder, and no subfolder holds one)",
                       where="kme compare", hint="finish the run (kme run --resume) or pass another folder")
    return out


def load_runs(paths: Iterable[str | Path]) -> list[RunInfo]:
    """Every run that ``paths`` name (sweeps expanded), with its summary read."""
    runs = []
    for p, label in expand_paths(paths):
        f = p / "summary.json"
        try:
            summary = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise KmeError(f"{f}: unreadable summary.json ({e})", where="kme compare") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
            raise KmeError(f"{f}: not a kme summary (no metrics)", where="kme compare")
        runs.append(RunInfo(p, label, summary))
    if not runs:
        raise KmeError("no runs to compare", where="kme compare", hint="pass run or sweep folders")
    return runs


def flatten_config(config: dict[str, Any], exclude: Iterable[str] = EXCLUDED_KEYS) -> dict[str, Any]:
    """``config`` as dotted keys (``editors.0.params.scale``); lists of plain values stay whole.
    Top-level ``exclude`` keys (the output folder, the ``resolved`` block) are left out."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            for i, x in enumerate(v):
                walk(f"{prefix}.{i}", x)
        else:
            flat[prefix] = v

    for k, v in config.items():
        if k not in set(exclude):
            walk(str(k), v)
    return flat


def _disjoint(a: list[float] | None, b: list[float] | None) -> bool:
    if not a or not b or None in a or None in b:
        return False
    return a[1] < b[0] or b[1] < a[0]


@dataclass
class Comparison:
    """The comparison ``kme compare`` prints; :meth:`to_json` is its ``--format json``."""

    runs: list[RunInfo]
    keys: list[str]
    metrics: list[str]
    configs: list[dict[str, Any]]
    cells: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # per run, per metric

    @property
    def reference(self) -> str:
        return self.runs[0].label

    def any_flagged(self) -> bool:
        return any(c.get("disjoint") for row in self.cells for c in row.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "keys": self.keys,
            "metrics": self.metrics,
            "runs": [{"run": r.label, "path": str(r.path), "config": cfg, "metrics": cells}
                     for r, cfg, cells in zip(self.runs, self.configs, self.cells)],
        }


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (2, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v)
    return (1, json.dumps(v, sort_keys=True, default=str))


def compare_runs(runs: list[RunInfo], metrics: list[str] | None = None, by: str | None = None) -> Comparison:
    """Build the comparison: rows sorted by config key ``by`` (when given); for each metric, each
    run's interval is checked against the first row's (``disjoint``) and every other run's
    (``disjoint_with``)."""
    flats = [flatten_config(r.config) for r in runs]
    if by is not None:
        if not any(by in f for f in flats):
            known = sorted({k for f in flats for k in f})
            raise KmeError(f"--by {by!r}: no run has this config key", where="kme compare",
                           hint=f"one of: {', '.join(known[:30])}")
        order = sorted(range(len(runs)), key=lambda i: _sort_key(flats[i].get(by)))
        runs, flats = [runs[i] for i in order], [flats[i] for i in order]
    all_keys: list[str] = []
    for f in flats:
        all_keys += [k for k in f if k not in all_keys]
    keys = [k for k in all_keys if len({json.dumps(f.get(k, "<absent>"), sort_keys=True, default=str)
                                        for f in flats}) > 1]
    if by is not None:
        keys = [by] + [k for k in keys if k != by]
    available: list[str] = []
    for r in runs:
        available += [m for m in r.summary["metrics"] if m not in available]
    if metrics:
        unknown = [m for m in metrics if m not in available]
        if unknown:
            raise KmeError(f"--metrics: {', '.join(map(repr, unknown))} not in any run's summary",
                           where="kme compare", hint=f"available: {', '.join(available)}")
        chosen = list(metrics)
    else:
        chosen = available
    configs = [{k: f.get(k) for k in keys} for f in flats]
    cells: list[dict[str, dict[str, Any]]] = []
    for r in runs:
        row = {}
        for m in chosen:
            e = r.summary["metrics"].get(m) or {}
            ci = e.get("ci") or (e.get("details") or {}).get("ci")
            row[m] = {"value": e.get("value"), "ci": ci,
                      "half_width": (ci[1] - ci[0]) / 2 if ci else None,
                      "baseline": e.get("baseline"), "n": e.get("n"),
                      "higher_is_better": e.get("higher_is_better")}
        cells.append(row)
    for m in chosen:
        for i, row in enumerate(cells):
            row[m]["disjoint"] = i > 0 and _disjoint(row[m]["ci"], cells[0][m]["ci"])
            row[m]["disjoint_with"] = [runs[j].label for j, other in enumerate(cells)
                                       if j != i and _disjoint(row[m]["ci"], other[m]["ci"])]
    return Comparison(runs=runs, keys=keys, metrics=chosen, configs=configs, cells=cells)


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e5 else f"{v:.4g}"
    return str(v)


def _cfg(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (dict, list, bool)):
        return json.dumps(v)
    return str(v)


def cell_text(c: dict[str, Any]) -> str:
    """``0.9300 ± 0.0300`` and the marker when disjoint from the first row."""
    from kme.pipeline.report import format_ci

    text = "-" if c["value"] is None else format_ci(c["value"], c["ci"])
    return text + (f" {MARKER}" if c.get("disjoint") else "")


def legend(comp: Comparison) -> str:
    return (f"{MARKER} 95% interval does not overlap the first row's ({comp.reference}); "
            "± is the interval's half-width")


def _rows(comp: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["run"] + comp.keys
    for m in comp.metrics:
        header += [m, f"{m} baseline"]
    body = []
    for r, cfg, cells in zip(comp.runs, comp.configs, comp.cells):
        row = [r.label] + [_cfg(cfg[k]) for k in comp.keys]
        for m in comp.metrics:
            row += [cell_text(cells[m]), _num(cells[m]["baseline"])]
        body.append(row)
    return header, body


def render(comp: Comparison, fmt: str = "table") -> str:
    """The comparison as ``table`` (aligned text), ``csv``, ``json`` or ``markdown``."""
    if fmt == "json":
        return json.dumps(comp.to_json(), indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        header = ["run"] + comp.keys
        for m in comp.metrics:
            header += [m, f"{m}.ci_lo", f"{m}.ci_hi", f"{m}.baseline", f"{m}.disjoint"]
        w.writerow(header)
        for r, cfg, cells in zip(comp.runs, comp.configs, comp.cells):
            row: list[Any] = [r.label] + [_cfg(cfg[k]) if cfg[k] is not None else "" for k in comp.keys]
            for m in comp.metrics:
                c = cells[m]
                ci = c["ci"] or [None, None]
                row += ["" if x is None else x for x in (c["value"], ci[0], ci[1], c["baseline"])]
                row.append("true" if c["disjoint"] else "false")
            w.writerow(row)
        return buf.getvalue()
    header, body = _rows(comp)
    flagged = comp.any_flagged()
    if fmt == "markdown":
        esc = [[c.replace("|", "\\|") for c in row] for row in [header] + body]
        lines = ["| " + " | ".join(esc[0]) + " |", "| " + " | ".join("---" for _ in header) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
        if flagged:
            lines += ["", legend(comp)]
        return "\n".join(lines) + "\n"
    if fmt != "table":
        raise KmeError(f"--format {fmt!r}: unknown", hint=f"one of {', '.join(FORMATS)}", where="kme compare")
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in [header] + body]
    if flagged:
        lines += ["", legend(comp)]
    return "\n".join(lines) + "\n"


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--metrics", "metrics", default=None, metavar="M1,M2", help="Only these metrics (comma-separated).")
@click.option("--by", "by", default=None, metavar="KEY.PATH",
              help="Sort (group) the runs by this config key, e.g. protocol.num_edits or editors.0.name.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def compare_cmd(runs: tuple[str, ...], metrics: str | None, by: str | None, fmt: str) -> None:
    """Compare finished runs (RUN or SWEEP folders): metrics ± 95% interval, baselines, differing config."""
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    comp = compare_runs(load_runs(runs), names, by)
    click.echo(render(comp, fmt), nl=False)
