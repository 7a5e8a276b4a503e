"""``kme report``: one self-contained HTML file for one or more runs (``docs/compare.md``).

Inline CSS, figures as base64 PNG (matplotlib), a few lines of inline JS to sort the per-edit
table; nothing is fetched when the file is viewed."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import click

from kme.compare import Comparison, RunInfo, cell_text, compare_runs, legend, load_runs

__all__ = ["write_html_report", "render_html_report", "report_cmd", "MAX_EDIT_ROWS", "MAX_HEATMAPS"]

MAX_EDIT_ROWS = 2000  # per run, in the per-edit table
MAX_HEATMAPS = 4  # per run

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#aaa}
.flag{color:#b00;font-weight:bold}.note{color:#666;font-size:.85em}
img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f7;padding:.5em;overflow:auto;font-size:.8em;max-height:40em}
details{margin:.3em 0}summary{cursor:pointer}
"""

JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),asc=th.dataset.dir!=='asc';
      t.querySelectorAll('th').forEach(function(h){delete h.dataset.dir;});th.dataset.dir=asc?'asc':'desc';
      function v(r){var s=r.cells[i].textContent.trim(),n=parseFloat(s);return isNaN(n)?s:n;}
      rows.sort(function(x,y){var a=v(x),c=v(y);
        var r=(typeof a==='number'&&typeof c==='number')?a-c:String(a).localeCompare(String(c));
        return asc?r:-r;});
      rows.forEach(function(r){b.appendChild(r);});
    });
  });
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _img(fig: Any, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    _plt().close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></figure>'


def _panels(n: int) -> tuple[Any, list[Any]]:
    import math

    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = _plt().subplots(rows, cols, figsize=(max(7.0, 4.2 * cols), 3.1 * rows + 0.4), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a truncated last line (interrupted run)
            continue
    return out


def _retention(run: RunInfo) -> dict[str, Any] | None:
    f = run.path / "retention.json"
    if f.is_file():
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError:
            return None
    rows = _read_jsonl(run.path / "checkpoints.jsonl")
    if not rows:
        return None
    return {"checkpoints": [{"num_edits": r["num_edits"], "metrics": r["metrics"]} for r in rows],
            "baseline": {m: e.get("baseline") for m, e in run.summary["metrics"].items()}}


def _retention_section(comp: Comparison) -> str:
    from kme.pipeline.report import is_rate

    curves = [(r, c) for r in comp.runs if (c := _retention(r))]
    if not curves:
        return "<p class='note'>No run has a retention curve (only sequential runs write one).</p>"
    metrics = [m for m in comp.metrics
               if any(cp["metrics"].get(m) is not None for _, c in curves for cp in c["checkpoints"])]
    if not metrics:
        return "<p class='note'>The retention curves hold none of the compared metrics.</p>"
    plt = _plt()
    fig, axes = _panels(len(metrics))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes, metrics):
        values: list[Any] = []
        for i, (run, c) in enumerate(curves):
            xs = [cp["num_edits"] for cp in c["checkpoints"]]
            ys = [cp["metrics"].get(m) for cp in c["checkpoints"]]
            values += ys
            col = colors[i % len(colors)]
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", color=col, label=run.label)
            base = (c.get("baseline") or {}).get(m)
            if base is not None:
                values.append(base)
                ax.axhline(base, color=col, linestyle="--", linewidth=1, alpha=0.7)
        if is_rate(values):
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("edits applied", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("Retention over every edit so far (dashed: unedited baseline)", fontsize=10)
    fig.tight_layout()
    return _img(fig, "retention curves")


def _editors_label(config: dict[str, Any]) -> str:
    names = []
    for e in config.get("editors") or []:
        names.append(e if isinstance(e, str) else str(e.get("name")))
    return "+".join(names) or "(unedited)"


def _scaling_section(comp: Comparison) -> str:
    from kme.pipeline.report import is_rate

    if "protocol.num_edits" not in comp.keys:
        return "<p class='note'>The runs do not vary <code>protocol.num_edits</code>: no scaling curves.</p>"
    groups: dict[str, list[tuple[int, RunInfo, dict[str, Any]]]] = {}
    for run, cells in zip(comp.runs, comp.cells):
        n = (run.config.get("protocol") or {}).get("num_edits") or (run.summary.get("counts") or {}).get("requests")
        if n is None:
            continue
        groups.setdefault(_editors_label(run.config), []).append((int(n), run, cells))
    metrics = [m for m in comp.metrics if any(c[m]["value"] is not None for c in comp.cells)]
    if not groups or not metrics:
        return "<p class='note'>No values to draw scaling curves from.</p>"
    fig, axes = _panels(len(metrics))
    for ax, m in zip(axes, metrics):
        values: list[Any] = []
        for label, pts in groups.items():
            pts = sorted(pts, key=lambda p: p[0])
            xs = [p[0] for p in pts]
            ys = [p[2][m]["value"] for p in pts]
            err = [[0.0 if p[2][m]["ci"] is None or y is None else max(0.0, y - p[2][m]["ci"][0]) for p, y in
                    zip(pts, ys)],
                   [0.0 if p[2][m]["ci"] is None or y is None else max(0.0, p[2][m]["ci"][1] - y) for p, y in
                    zip(pts, ys)]]
            values += ys + [p[2][m]["baseline"] for p in pts]
            ax.errorbar(xs, [float("nan") if y is None else y for y in ys], yerr=err, marker="o", capsize=3,
                        label=label)
            base = [p[2][m]["baseline"] for p in pts]
            if any(b is not None for b in base):
                ax.plot(xs, [float("nan") if b is None else b for b in base], color="grey", linestyle="--",
                        linewidth=1)
        if is_rate(values):
            ax.set_ylim(-0.02, 1.02)
        ax.set_xscale("log" if max(p[0] for g in groups.values() for p in g) > 50 *
                      max(1, min(p[0] for g in groups.values() for p in g)) else "linear")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("number of edits", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("Scaling: metric vs number of edits, one line per editor\n(± 95% interval; dashed: unedited)",
                 fontsize=10)
    fig.tight_layout()
    return _img(fig, "scaling curves")


def _heatmaps(run: RunInfo, rows: list[dict[str, Any]]) -> list[str]:
    """Causal-tracing heat maps from ``location.scores.mean_indirect_effect`` (kind -> token -> per layer)."""
    out: list[str] = []
    seen: set[Any] = set()
    for r in rows:
        loc = r.get("location") or {}
        effects = (loc.get("scores") or {}).get("mean_indirect_effect")
        if not isinstance(effects, dict) or r.get("batch") in seen:
            continue
        seen.add(r.get("batch"))
        labels, grid = [], []
        for kind, by_token in effects.items():
            if not isinstance(by_token, dict):
                continue
            for tok, vals in by_token.items():
                if isinstance(vals, list) and vals and all(isinstance(v, (int, float)) for v in vals):
                    labels.append(f"{kind} @ {tok}")
                    grid.append([float(v) for v in vals])
        if not grid or len({len(g) for g in grid}) != 1:
            continue
        plt = _plt()
        fig, ax = plt.subplots(figsize=(max(5.5, 2.5 + 0.3 * len(grid[0])), 1.2 + 0.35 * len(grid)))
        im = ax.imshow(grid, aspect="auto", cmap="Purples")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xticks(range(len(grid[0])), [str(i) for i in range(len(grid[0]))], fontsize=6)
        ax.set_xlabel("layer", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.05)
        ranked = loc.get("layers") or []
        ax.set_title(f"{run.label}, batch {r.get('batch')}\nmean indirect effect"
                     + (f" (chosen layer {ranked[0]})" if ranked else ""), fontsize=8)
        fig.tight_layout()
        out.append(_img(fig, f"causal trace {run.label} batch {r.get('batch')}"))
        if len(out) >= MAX_HEATMAPS:
            break
    return out


def _metric_cell(v: Any) -> str:
    if isinstance(v, float):
        return f"<td class='num'>{v:.4f}</td>"
    if isinstance(v, (int, bool)) or v is None:
        return f"<td class='num'>{'' if v is None else _e(v)}</td>"
    return f"<td>{_e(json.dumps(v))}</td>"


def _comparison_table(comp: Comparison) -> str:
    head = ["run"] + comp.keys
    for m in comp.metrics:
        head += [f"{m} (± 95% CI)", f"{m} baseline"]
    lines = ["<table class='sortable' id='comparison'><thead><tr>"
             + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for run, cfg, cells in zip(comp.runs, comp.configs, comp.cells):
        tds = [f"<td>{_e(run.label)}</td>"]
        tds += [f"<td>{_e('-' if cfg[k] is None else json.dumps(cfg[k]) if not isinstance(cfg[k], str) else cfg[k])}"
                "</td>" for k in comp.keys]
        for m in comp.metrics:
            c = cells[m]
            cls = "num flag" if c.get("disjoint") else "num"
            tds.append(f"<td class='{cls}'>{_e(cell_text(c))}</td>")
            b = c["baseline"]
            tds.append(f"<td class='num'>{'-' if b is None else f'{b:.4f}' if isinstance(b, float) else _e(b)}</td>")
        lines.append("<tr>" + "".join(tds) + "</tr>")
    lines.append("</tbody></table>")
    if comp.any_flagged():
        lines.append(f"<p class='note'>{_e(legend(comp))}</p>")
    if not comp.keys and len(comp.runs) > 1:
        lines.append("<p class='note'>The runs' configs do not differ (output folder aside).</p>")
    return "\n".join(lines)


def _edits_table(comp: Comparison, edits: dict[str, list[dict[str, Any]]]) -> str:
    head = ["run", "case_id", "batch", "editors"]
    for m in comp.metrics:
        head += [m, f"{m} baseline"]
    head.append("error")
    lines = ["<table class='sortable' id='edits'><thead><tr>"
             + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    notes = []
    for run in comp.runs:
        rows = edits.get(run.label, [])
        if len(rows) > MAX_EDIT_ROWS:
            notes.append(f"{run.label}: first {MAX_EDIT_ROWS} of {len(rows)} edits shown")
        for r in rows[:MAX_EDIT_ROWS]:
            tds = [f"<td>{_e(run.label)}</td>", _metric_cell(r.get("case_id")), _metric_cell(r.get("batch")),
                   f"<td>{_e(', '.join(map(str, r.get('editors') or [])))}</td>"]
            for m in comp.metrics:
                tds += [_metric_cell((r.get("metrics") or {}).get(m)), _metric_cell((r.get("baseline") or {}).get(m))]
            tds.append(f"<td>{_e(r.get('error') or '')}</td>")
            lines.append("<tr>" + "".join(tds) + "</tr>")
    lines.append("</tbody></table>")
    lines += [f"<p class='note'>{_e(n)}</p>" for n in notes]
    return "\n".join(lines)


def render_html_report(paths: list[str | Path], metrics: list[str] | None = None, by: str | None = None) -> str:
    """The report for the runs that ``paths`` name (run or sweep folders) as one HTML document."""
    comp = compare_runs(load_runs(paths), metrics, by)
    edits = {r.label: _read_jsonl(r.path / "edits.jsonl") for r in comp.runs}
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>kme report ({len(comp.runs)} run{'s' if len(comp.runs) != 1 else ''})</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>kme report: {len(comp.runs)} run{'s' if len(comp.runs) != 1 else ''}</h1>",
             "<h2 id='comparison-h'>Comparison</h2>",
             "<p class='note'>One row per run; only config keys that differ between runs are shown. "
             "± is half the width of a 95% bootstrap interval over requests.</p>",
             _comparison_table(comp),
             "<h2 id='retention'>Retention</h2>", _retention_section(comp),
             "<h2 id='scaling'>Scaling</h2>", _scaling_section(comp),
             "<h2 id='causal-tracing'>Causal tracing</h2>"]
    maps = [img for r in comp.runs for img in _heatmaps(r, edits[r.label])]
    parts += maps or ["<p class='note'>No run has causal-tracing locations (a <code>causal-tracing</code> "
                      "locator's <code>location.scores.mean_indirect_effect</code> in edits.jsonl).</p>"]
    parts.append("<h2 id='config'>Resolved configuration</h2>")
    for r in comp.runs:
        parts.append(f"<details><summary>{_e(r.label)}</summary><pre>"
                     f"{_e(json.dumps(r.config, indent=2, default=str))}</pre></details>")
    parts += ["<h2 id='per-edit'>Per-edit results</h2>",
              "<p class='note'>Click a column header to sort.</p>", _edits_table(comp, edits),
              f"<script>{JS}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def write_html_report(paths: list[Path], out: Path) -> Path:
    """Write the self-contained HTML report for ``paths`` (run or sweep folders) to ``out``."""
    out = Path(out)
    text = render_html_report(list(paths))
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML file to write.")
def report_cmd(runs: tuple[str, ...], out: str) -> None:
    """Write one self-contained HTML report for RUN or SWEEP folders (tables, curves, per-edit results)."""
    path = write_html_report([Path(r) for r in runs], Path(out))
    click.echo(f"report written to {path}")
