"""docs/hooks.md's examples run offline, as written: one per hook, top to bottom as one script."""

from __future__ import annotations

import re
from pathlib import Path

from kme import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "hooks.md"


def examples() -> list[tuple[str, str]]:
    """(section, code) for every ``Example:`` block, in page order; the section is the hook
    heading above it, or ``setup`` before the first hook."""
    out, section = [], "setup"
    for chunk in re.split(r"(?m)^(?=### )", DOC.read_text()):
        m = re.match(r"### (\w+)", chunk)
        section = m.group(1) if m else section
        out += [(section, code) for code in re.findall(r"(?m)^Example:\n\n```python\n(.*?)^```", chunk, re.S)]
    return out


def test_every_hook_has_one_example():
    sections = [s for s, _ in examples()]
    hooks = sorted(n for n in dir(hookspecs) if n.startswith("kme_"))
    assert sections[0] == "setup"
    assert sorted(sections[1:]) == hooks, "each hook in docs/hooks.md needs exactly one `Example:` block"


def test_hook_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KME_NO_PROGRESS", "1")
    ns: dict = {}
    for section, code in examples():
        exec(compile(code, f"docs/hooks.md ({section} example)", "exec"), ns)
    assert ns["located"] and ns["edits"] and ns["scores"] and ns["started"] and ns["ended"]
