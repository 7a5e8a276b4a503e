"""Wall time of one sweep under each executor, and whether they give the same summaries.

    python benchmarks/sweep_executors.py [--sweep examples/sweeps/rome-memit-scaling.yaml]
                                         [--out /tmp/kme-sweep-bench] [--executors loop,jobs1,jobs2,ray]

Executors:

- ``loop``: one ``kme run BASE KEY=VALUE... --out DIR`` process per point (a model load and an
  interpreter start-up per point) -- what a shell loop over the points costs;
- ``jobs1``: ``kme sweep --jobs 1`` (one process, the model loaded once);
- ``jobs2``: ``kme sweep --jobs 2`` (two worker processes, one model each);
- ``ray``: ``kme sweep --ray --jobs 2`` (a local Ray instance, two actors).

A warm-up run fills the key-statistics cache first, so no executor pays for it. Prints a
table of wall seconds and, for every point, whether each executor's ``summary.json`` metric
values and intervals equal the first executor's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _kme(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("kme")), *args]


def _metrics(summary: Path) -> dict:
    doc = json.loads(summary.read_text())
    return {k: (m.get("value"), m.get("ci")) for k, m in doc["metrics"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", default="examples/sweeps/rome-memit-scaling.yaml")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "kme-sweep-bench"))
    ap.add_argument("--executors", default="loop,jobs1,jobs2,ray")
    args = ap.parse_args()

    from kme import build_plugin_manager
    from kme.sweep import load_sweep

    sweep = load_sweep(args.sweep, build_plugin_manager())
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    base = out / "base.yaml"
    base.write_text(yaml.safe_dump(sweep.base, sort_keys=False))
    folders = [pt.folder for pt in sweep.points]
    editors = sorted({json.dumps(pt.overrides.get("editors")) for pt in sweep.points})

    print(f"warm-up (statistics cache) for {len(editors)} editor list(s)...", file=sys.stderr)
    for i, eds in enumerate(editors):
        subprocess.run(_kme("run", str(base), f"editors={eds}", "protocol.num_edits=1", "--out",
                            str(out / f"warm{i}"), "-q", "--no-progress"), check=True, stdout=subprocess.DEVNULL)

    runs: dict[str, tuple[float, Path]] = {}
    for ex in args.executors.split(","):
        root = out / ex
        t0 = time.perf_counter()
        if ex == "loop":
            for pt in sweep.points:
                kv = [f"{k}={json.dumps(v)}" for k, v in pt.overrides.items()]
                subprocess.run(_kme("run", str(base), *kv, "--out", str(root / pt.folder), "-q", "--no-progress"),
                               check=True, stdout=subprocess.DEVNULL)
        else:
            extra = {"jobs1": ["--jobs", "1"], "jobs2": ["--jobs", "2"], "ray": ["--ray", "--jobs", "2"]}[ex]
            subprocess.run(_kme("sweep", args.sweep, "--out", str(root), "-q", "--no-progress", *extra), check=True,
                           stdout=subprocess.DEVNULL)
        runs[ex] = (time.perf_counter() - t0, root)
        print(f"{ex}: {runs[ex][0]:.1f} s", file=sys.stderr)

    first = next(iter(runs))
    ref = {f: _metrics(runs[first][1] / f / "summary.json") for f in folders}
    print(f"sweep: {args.sweep} ({len(folders)} points)\n")
    print("| executor | wall s | vs loop | summaries equal to " + first + " |")
    print("|---|---:|---:|---|")
    for ex, (secs, root) in runs.items():
        same = all(_metrics(root / f / "summary.json") == ref[f] for f in folders)
        rel = f"{runs['loop'][0] / secs:.2f}x" if "loop" in runs else "-"
        print(f"| {ex} | {secs:.1f} | {rel} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
