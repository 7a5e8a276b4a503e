"""The declared plugin API (docs/plugin-api.md), read from the source.

A plugin imports kernel names only from ``kme`` itself -- ``from kme import NAME`` or
``import kme`` then ``kme.NAME`` -- where ``NAME`` is in ``kme.__all__``; and, for its tests,
the names in ``kme.testing.__all__`` and ``kme.conformance.__all__`` (``kme.TEST_MODULES``).
Every other module under ``kme`` is internal. The check walks the ``src/`` of every
first-party plugin and library (``plugins/*``) and of ``contrib/*``, including imports
inside functions and ``TYPE_CHECKING`` blocks and ``importlib.import_module("kme....")``.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import kme

ROOT = Path(__file__).resolve().parents[1]

#: ``file: statement`` pairs not yet switched to the declared API, because those files belong
#: to another piece of work in progress. Delete an entry once its file imports from ``kme``;
#: the test fails on an entry that no longer occurs, so the list only shrinks.
PENDING: set[tuple[str, str]] = set()  # (file, import) pairs allowed while being migrated


def api() -> dict[str, set[str]]:
    """Module name -> the names a plugin may import from it."""
    out = {"kme": set(kme.__all__) | set(m.rsplit(".", 1)[1] for m in kme.TEST_MODULES) | {"__version__"}}
    for name in kme.TEST_MODULES:
        out[name] = set(importlib.import_module(name).__all__)
    return out


def _kme_names(tree: ast.AST) -> set[str]:
    """The local names bound to the ``kme`` package by ``import kme`` (or ``import kme as k``)."""
    return {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
            for a in node.names if a.name == "kme"}


def check_file(path: Path, allowed: dict[str, set[str]], label: str) -> list[tuple[str, str]]:
    """(``label:line``, problem) for every use of a kernel name outside the declared API."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str, str]] = []
    local = _kme_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("kme.") and a.name not in allowed:
                    found.append((node.lineno, ast.unparse(node), f"{a.name} is internal"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mod = node.module
            if mod != "kme" and not mod.startswith("kme."):
                continue
            if mod not in allowed:
                found.append((node.lineno, ast.unparse(node), f"{mod} is internal"))
                continue
            bad = [a.name for a in node.names if a.name not in allowed[mod]]
            if bad:
                found.append((node.lineno, ast.unparse(node), f"{', '.join(bad)} not in {mod}'s declared API"))
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in local
              and node.attr not in allowed["kme"]):
            found.append((node.lineno, ast.unparse(node), f"kme.{node.attr} is not in kme.__all__"))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and node.args[0].value.startswith("kme.")
              and node.args[0].value not in allowed
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.append((node.lineno, ast.unparse(node), f"{node.args[0].value} is internal"))
    return [(f"{label}:{line}", f"`{stmt}` -- {why}") for line, stmt, why in sorted(found)]


def plugin_sources(root: Path) -> list[Path]:
    return sorted(p for pattern in ("plugins/*/src", "contrib/*/src", "contrib/*/*/src")
                  for src in root.glob(pattern) for p in src.rglob("*.py"))


def violations(root: Path, pending: set[tuple[str, str]] = frozenset()) -> tuple[list[str], set]:
    allowed, problems, seen = api(), [], set()
    for path in plugin_sources(root):
        rel = path.relative_to(root).as_posix()
        for where, problem in check_file(path, allowed, rel):
            stmt = problem.split("`")[1]
            if (rel, stmt) in pending:
                seen.add((rel, stmt))
                continue
            problems.append(f"{where}: {problem}")
    return problems, set(pending) - seen


def test_plugins_and_contrib_use_only_the_declared_api():
    problems, stale = violations(ROOT, PENDING)
    assert not problems, ("imports of kernel names outside the plugin API (docs/plugin-api.md; import them from "
                          "`kme`, or add them to kme.__all__ and document them):\n  " + "\n  ".join(problems))
    assert not stale, f"PENDING entries that no longer occur; delete them from {__file__}: {sorted(stale)}"


def test_every_api_name_exists_and_is_documented():
    doc = (ROOT / "docs" / "plugin-api.md").read_text()
    for module, names in api().items():
        mod = importlib.import_module(module)
        for name in sorted(names - {"__version__", "testing", "conformance"}):
            assert hasattr(mod, name), f"{module}.__all__ names {name}, which {module} does not define"
            assert re.search(rf"^\| `{re.escape(name)}`", doc, re.M), f"{module}.{name} is missing from docs/plugin-api.md"


def test_the_checker_names_the_file_and_the_line(tmp_path):
    src = tmp_path / "plugins" / "kme-x" / "src" / "kme_x"
    src.mkdir(parents=True)
    (src / "a.py").write_text(
        "import kme\n"
        "from kme import EditedModel, ConfigError\n"
        "from kme.edited import join_target\n"
        "from kme import _private\n"
        "def f():\n"
        "    from kme.testing import tiny_model\n"
        "    import kme.pipeline.runner\n"
        "    return kme.errors.ConfigError, kme.Editor, kme.hookimpl\n"
        "import importlib\n"
        "importlib.import_module('kme.cli')\n")
    problems, stale = violations(tmp_path, {("plugins/kme-x/src/kme_x/a.py", "from kme import _private"),
                                            ("gone.py", "import kme.gone")})
    text = "\n".join(problems)
    assert "plugins/kme-x/src/kme_x/a.py:3: `from kme.edited import join_target` -- kme.edited is internal" in text
    assert "a.py:7: `import kme.pipeline.runner` -- kme.pipeline.runner is internal" in text
    assert "a.py:8: `kme.errors` -- kme.errors is not in kme.__all__" in text
    assert "a.py:10: `importlib.import_module('kme.cli')` -- kme.cli is internal" in text
    assert len(problems) == 4, text
    assert stale == {("gone.py", "import kme.gone")}


@pytest.mark.parametrize("name", sorted(kme.__all__))
def test_api_names_are_public(name):
    assert not name.startswith("_")
