"""The result tables in docs/*.md are what `kme compare` prints from the committed summaries
(docs/tables.py regenerates them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tables_module():
    spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "docs" / "tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_tables_are_what_kme_compare_prints():
    mod = _tables_module()
    found = 0
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for args, body, fresh in mod.tables(doc):
            found += 1
            assert body == fresh, f"{doc.name}: the table of `kme compare {args}` is stale; run python docs/tables.py"
    assert found >= 1  # the memory-editors family (docs/memory-editors.md)


def test_a_stale_table_is_found_and_rewritten(tmp_path, monkeypatch):
    mod = _tables_module()
    args = "examples/memory-editors/results/family --metrics accuracy --format markdown"
    doc = tmp_path / "d.md"
    doc.write_text(f"# t\n\n<!-- kme compare {args} -->\n| stale |\n<!-- /kme compare -->\nafter\n")
    [(a, body, fresh)] = mod.tables(doc)
    assert a == args and body == "| stale |\n" and fresh.startswith("| run |") and body != fresh
    assert mod.update(doc) and not mod.update(doc)
    text = doc.read_text()
    assert fresh in text and text.endswith("<!-- /kme compare -->\nafter\n")
