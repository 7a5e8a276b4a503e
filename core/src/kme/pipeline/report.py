"""What a finished run writes for people: ``summary.json``, ``report.md``, the retention curve."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Iterable

import structlog

from kme.data import RunSummary
from kme.pipeline.session import mean

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Metric
    from kme.pipeline.runner import RunDir
    from kme.pipeline.session import RunSession

__all__ = ["summarise", "report", "write_retention", "bootstrap_ci", "format_ci", "is_rate", "CI_RESAMPLES",
           "CI_LEVEL"]

log = structlog.get_logger("kme")

CI_RESAMPLES = 1000
CI_LEVEL = 0.95


def _numbers(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))]


def bootstrap_ci(values: Iterable[float | None], seed: int = 0, resamples: int = CI_RESAMPLES,
                 level: float = CI_LEVEL) -> list[float] | None:
    """Percentile bootstrap interval ``[lo, hi]`` of the mean of ``values`` (``None``/NaN skipped).

    ``resamples`` means of ``n`` values drawn with replacement, seeded by ``seed`` (the same values
    and seed give the same interval); ``None`` when fewer than 2 values are numbers."""
    import numpy as np

    xs = np.asarray(_numbers(values), dtype=np.float64)
    if xs.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = xs[rng.integers(0, xs.size, size=(resamples, xs.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    # a bootstrap mean lies within [min, max]; clipping only removes float rounding (constant values)
    return [float(min(max(lo, xs.min()), xs.max())), float(min(max(hi, xs.min()), xs.max()))]


def format_ci(value: float | None, ci: list[float] | None, digits: int = 4) -> str:
    """``0.9300 ± 0.0300`` (the interval's half-width); the bare value when there is no interval."""
    if value is None:
        return "—"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if ci is None or ci[0] is None or ci[1] is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {(ci[1] - ci[0]) / 2:.{digits}f}"


def is_rate(values: Iterable[Any]) -> bool:
    """Whether every value that is a number lies in [0, 1] (a rate: plot it on a 0–1 axis)."""
    xs = _numbers(values)
    return bool(xs) and all(0.0 <= x <= 1.0 for x in xs)


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
    seed = getattr(getattr(session, "spec", None), "seed", 0) or 0
    for m in metrics:
        immediate = mean([r["metrics"].get(m.name) for r in ok])
        # the values the summary value is the mean of: per request (batch), or the final checkpoint's
        per_request = final["per_request"].get(m.name, []) if final else [r["metrics"].get(m.name) for r in ok]
        ci = bootstrap_ci(per_request, seed=seed)
        entry: dict[str, Any] = {
            "value": final["metrics"].get(m.name) if final else immediate,
            "baseline": mean(baseline.get(m.name, [])),
            "scoring": m.scoring,
            "n": sum(1 for r in ok if r["metrics"].get(m.name) is not None) if not final else
                 sum(1 for v in final["per_request"].get(m.name, []) if v is not None),
            "higher_is_better": m.higher_is_better,
            "ci": ci,
        }
        if final:
            entry["immediate"] = immediate
        extra = m.details(ctx)
        entry["details"] = {**(extra or {}), "ci": ci}
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
        if is_rate(ys + [base]):  # a rate: 1.00 -> 0.98 must not look like a collapse
            ax.set_ylim(-0.02, 1.02)
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
        "| metric | value (± 95% CI half-width) | baseline (unedited) | scoring | n | higher is better |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in summary["metrics"].items():
        lines.append(f"| {name} | {format_ci(m['value'], m.get('ci'))} | {_fmt(m['baseline'])} | {m['scoring']} | {m['n']} | "
                     f"{'yes' if m['higher_is_better'] else 'no'} |")
    lines += ["", f"± is half the width of a {CI_LEVEL:.0%} bootstrap interval over requests "
                  f"({CI_RESAMPLES} resamples, seed {c.get('seed', 0)})."]
    if any("immediate" in m for m in summary["metrics"].values()):
        lines += ["", f"Edits accumulate ({c['protocol']['mode']} protocol): *value* is measured after the last "
                      "edit over every edit (retention); the curve is in retention.json / retention.png."]
    t = summary["timings"]
    lines += ["", f"Time: {t.get('total_s', 0):.1f} s total, {t.get('edit_s', 0):.1f} s editing, "
                  f"{t.get('eval_s', 0):.1f} s evaluating, {t.get('baseline_s', 0):.1f} s baseline."]
    if summary["failures"]:
        lines += ["", "## Failures", ""] + [f"- batch {f['batch']}: {f['error']}" for f in summary["failures"]]
    return "\n".join(lines) + "\n"
