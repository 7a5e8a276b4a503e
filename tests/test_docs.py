"""Documentation stays in step with the code: every hook spec is documented, fully."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from kme import hookspecs

ROOT = Path(__file__).resolve().parents[1]
SPECS = [(n, f) for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("kme_")]


def test_there_are_hooks_for_the_four_concerns_and_registration():
    names = {n for n, _ in SPECS}
    assert {"kme_locate", "kme_edit", "kme_memory_lookup", "kme_evaluate"} <= names
    assert {"kme_register_editors", "kme_register_locators", "kme_register_datasets",
            "kme_register_metrics"} <= names


@pytest.mark.parametrize("name,fn", SPECS, ids=[n for n, _ in SPECS])
def test_every_hook_spec_is_documented_in_docs(name, fn):
    doc = (ROOT / "docs" / "hooks.md").read_text()
    assert re.search(rf"^### {name}$", doc, re.M), f"{name} is missing from docs/hooks.md"
    text = inspect.getdoc(fn) or ""
    for arg in inspect.signature(fn).parameters:
        assert f":param {arg}:" in text, f"{name}: parameter {arg} undocumented"
    assert ":returns:" in text and "Called" in text, f"{name}: say what it returns and when it is called"
    first = fn.kme_spec.get("firstresult", False) if hasattr(fn, "kme_spec") else False
    assert ("firstresult" in text) and (("Not firstresult" in text) != first), \
        f"{name}: the docstring must state whether it is firstresult"


def test_documented_hooks_exist():
    doc = (ROOT / "docs" / "hooks.md").read_text()
    documented = set(re.findall(r"^### (kme_\w+)$", doc, re.M))
    assert documented == {n for n, _ in SPECS}
