"""What a finished run writes for people: ``summary.json``, ``report.md``, the retention curve."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import structlog

from kme.data import RunSummary
from kme.pipeline.session import mean

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Metric
    from kme.pipeline.runner import RunDir
    from kme.pipeline.session import RunSession

__all__ = ["summarise", "report", "write_retention"]

log = structlog.get_logger("kme")


def summarise(session: "RunSession", config: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    """The public summary (``docs/summary-format.md``) of a finished run."""
    from kme.versions import package_versions

    rd, metrics, baseline, ctx = session.run_dir, session.metrics, session.baseline, session.context
    failures, checkpoint_rows = session.failures, session.checkpoint_rows
    rows = rd.read_jsonl(rd.edits)
    ok = [r for r in rows if r.get("error") is None]
    failed = [r for r in rows if r.get("error") is not None]
    for r in failed:
        if not any(f.get("batch") == r["batch"] for f in failures):
            failures.append({"batch": r["batch"], "error": r["error"]})
    out: dict[str, dict[str, Any]] = {}
    final = checkpoint_rows[-1] if checkpoint_rows else None
    for m in metrics:
        immediate = mean([r["metrics"].get(m.name) for r in ok])
        entry: dict[str, Any] = {
            "value": final["metrics"].get(m.name) if final else immediate,
            "baseline": mean(baseline.get(m.name, [])),
            "scoring": m.scoring,
            "n": sum(1 for r in ok if r["metrics"].get(m.name) is not None) if not final else
                 sum(1 for v in final["per_request"].get(m.name, []) if v is not None),
            "higher_is_better": m.higher_is_better,
        }
        if final:
            entry["immediate"] = immediate
        extra = m.details(ctx)
        if extra:
            entry["details"] = extra
        out[m.name] = entry
    summary = RunSummary(
        status="complete",
        metrics=out,
        config=config,
        versions=package_versions(),
        timings={k: round(v, 4) for k, v in timings.items()},
        counts={"requests": len(session.requests), "batches": len(session.batches), "edited": len(ok), "failed": len(failed)},
        failures=failures,
    )
    return summary.model_dump(mode="json")


def write_retention(rd: "RunDir", rows: list[dict[str, Any]], baseline: dict[str, list[float | None]],
                    metrics: list["Metric"]) -> None:
    """``retention.json`` (the curve) and ``retention.png`` (one panel per metric)."""
    data = {
        "checkpoints": [{"num_edits": r["num_edits"], "metrics": r["metrics"]} for r in rows],
        "baseline": {m: mean(v) for m, v in baseline.items()},
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


def report(summary: dict[str, Any]) -> str:
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
    if any("immediate" in m for m in summary["metrics"].values()):
        lines += ["", f"Edits accumulate ({c['protocol']['mode']} protocol): *value* is measured after the last "
                      "edit over every edit (retention); the curve is in retention.json / retention.png."]
    t = summary["timings"]
    lines += ["", f"Time: {t.get('total_s', 0):.1f} s total, {t.get('edit_s', 0):.1f} s editing, "
                  f"{t.get('eval_s', 0):.1f} s evaluating, {t.get('baseline_s', 0):.1f} s baseline."]
    if summary["failures"]:
        lines += ["", "## Failures", ""] + [f"- batch {f['batch']}: {f['error']}" for f in summary["failures"]]
    return "\n".join(lines) + "\n"
