"""The result tables in docs/*.md that ``kme compare`` prints, kept equal to its output.

A generated table sits between two comments; the first holds the ``kme compare`` arguments
(run or sweep folders relative to the repository root, then options)::

    <!-- kme compare examples/memory-editors/results/family --format markdown -->
    | run | ... |
    <!-- /kme compare -->

    python docs/tables.py            # rewrite every such table from the committed summaries
    python docs/tables.py --check    # exit 1 naming each table that differs (tests run this)
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- kme compare (?P<args>[^\n]*?) -->\n)(?P<body>.*?)(<!-- /kme compare -->)", re.S)


def render(args: str) -> str:
    """What ``kme compare ARGS`` prints, run from the repository root."""
    import os

    from click.testing import CliRunner

    from kme.cli import make_cli
    from kme.plugins import build_plugin_manager

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        r = CliRunner().invoke(make_cli(build_plugin_manager()), ["compare", *shlex.split(args)])
    finally:
        os.chdir(cwd)
    if r.exit_code != 0:
        raise RuntimeError(f"kme compare {args} failed ({r.exit_code}): {r.output}")
    return r.output if r.output.endswith("\n") else r.output + "\n"


def tables(doc: Path) -> list[tuple[str, str, str]]:
    """``(args, committed table, table kme compare prints)`` of every generated table in ``doc``."""
    text = doc.read_text()
    return [(m["args"], m["body"], render(m["args"])) for m in BLOCK.finditer(text)]


def update(doc: Path) -> bool:
    """Rewrite ``doc``'s generated tables; True when something changed."""
    text = doc.read_text()
    new = BLOCK.sub(lambda m: m.group(1) + render(m["args"]) + m.group(4), text)
    if new != text:
        doc.write_text(new)
    return new != text


def main(argv: list[str]) -> int:
    docs = sorted((ROOT / "docs").glob("*.md"))
    if "--check" in argv:
        bad = [f"{d.relative_to(ROOT)}: kme compare {a}" for d in docs for a, body, fresh in tables(d) if body != fresh]
        for b in bad:
            print(f"table differs from what the command prints: {b}", file=sys.stderr)
        return 1 if bad else 0
    for d in docs:
        if update(d):
            print(f"updated {d.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
