"""Print the measured metrics of the memory-editor example runs as a Markdown table.

    python examples/memory-editors/table.py runs/memory-editors/*

Each argument is a run folder written by ``kme run``; rows are runs, columns the metrics
(value, and for sequential runs the mean right-after-edit value in parentheses).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ["accuracy", "generality", "locality", "efficacy_score", "paraphrase_score", "neighborhood_score",
           "multihop_accuracy", "portability"]


def main(folders: list[str]) -> None:
    rows = []
    for f in folders:
        s = Path(f) / "summary.json"
        if not s.exists():
            continue
        summary = json.loads(s.read_text())
        rows.append((Path(f).name, summary))
    cols = [c for c in COLUMNS if any(c in s["metrics"] for _, s in rows)]
    print("| run | edits | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    if rows:
        base = rows[0][1]["metrics"]
        print("| unedited | – | " + " | ".join(_fmt(base.get(c, {}).get("baseline")) for c in cols) + " |")
    for name, s in rows:
        cells = []
        for c in cols:
            m = s["metrics"].get(c, {})
            cell = _fmt(m.get("value"))
            if "immediate" in m:
                cell += f" ({_fmt(m['immediate'])})"
            cells.append(cell)
        print(f"| {name} | {s['counts']['edited']} | " + " | ".join(cells) + " |")


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main(sys.argv[1:])
