"""Every first-party package declares exactly the distributions its source imports.

A package -- ``core/`` (distribution ``kme-core``, import package ``kme``) and each
``plugins/*`` / ``contrib/*`` folder with a ``pyproject.toml`` -- must install alone: what its
``src/`` imports must come from a distribution its ``[project] dependencies`` name, and every
distribution named there must be imported somewhere in ``src/`` (no passengers).

How imports are read (``ast``, so nothing is imported):

* every ``import x`` / ``from x import y`` (absolute), at any depth -- module level, inside
  functions, classes, ``if`` blocks -- and ``importlib.import_module("x")`` with a literal name;
* an import is *optional* when it sits under ``if TYPE_CHECKING:`` or in the body of a ``try``
  whose handlers catch ``ImportError`` / ``ModuleNotFoundError``. An optional import may be
  declared in ``[project.optional-dependencies]`` instead; an unconditional one must be in
  ``[project] dependencies``;
* standard-library modules (``sys.stdlib_module_names``) and ``__future__`` are skipped;
* an import name maps to distributions through the first-party table (from the packages'
  ``src/`` folders) and ``importlib.metadata.packages_distributions()`` (the installed
  environment: ``yaml`` -> ``PyYAML``).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIST = "kme-core"

#: Distributions a package needs at run time without importing them, with the reason. Keep it short:
#: each entry is a dependency no import in ``src/`` proves.
RUNTIME_ONLY: dict[tuple[str, str], str] = {}

#: Test-support modules: only test suites import them, so their imports may come from an extra
#: (``pytest`` from ``[test]``) instead of ``[project] dependencies``.
TEST_SUPPORT = {"kme.conformance", "kme_editlib.testing"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(requirement: str) -> str:
    return _norm(re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0])


@dataclass
class Package:
    dist: str
    root: Path
    modules: set[str] = field(default_factory=set)  # top-level import names under src/
    requires: set[str] = field(default_factory=set)  # [project] dependencies
    extras: set[str] = field(default_factory=set)  # [project.optional-dependencies], all extras


def discover(root: Path) -> list[Package]:
    tomls = [root / "core" / "pyproject.toml", *sorted(root.glob("plugins/*/pyproject.toml")),
             *sorted(root.glob("contrib/*/pyproject.toml"))]
    out = []
    for toml in tomls:
        if not toml.is_file():
            continue
        project = tomllib.loads(toml.read_text()).get("project", {})
        src = toml.parent / "src"
        modules = set()
        if src.is_dir():
            modules = {p.name for p in src.iterdir() if (p / "__init__.py").is_file()}
            modules |= {p.stem for p in src.glob("*.py")}
        extras = {_dist_name(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
        out.append(Package(_norm(project.get("name", toml.parent.name)), toml.parent, modules,
                           {_dist_name(r) for r in project.get("dependencies", [])}, extras))
    return out


def _catches_import_error(node: ast.Try) -> bool:
    names = set()
    for h in node.handlers:
        types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        names |= {t.id if isinstance(t, ast.Name) else getattr(t, "attr", None) for t in types if t is not None}
        if h.type is None:
            names.add("ImportError")  # bare except
    return bool(names & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, top-level module, optional) for every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name.split(".")[0], optional) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0], optional))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            out.append((node.lineno, node.args[0].value.split(".")[0], optional))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, optional)
            return
        if isinstance(node, ast.Try) and _catches_import_error(node):
            for child in node.body:
                visit(child, True)
            for child in (*node.handlers, *node.orelse, *node.finalbody):
                visit(child, optional)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(tree, False)
    return out


@lru_cache(maxsize=1)
def _installed() -> dict[str, frozenset[str]]:
    return {mod: frozenset(_norm(d) for d in dists)
            for mod, dists in importlib.metadata.packages_distributions().items()}


def _stdlib(module: str) -> bool:
    return module == "__future__" or module in sys.stdlib_module_names


def problems(root: Path, installed: dict[str, frozenset[str]] | None = None) -> list[str]:
    """Every undeclared import and every declared-but-unimported distribution, as ``file:line: ...``."""
    packages = discover(root)
    first_party = {m: frozenset({p.dist}) for p in packages for m in p.modules}
    table = {**(_installed() if installed is None else installed), **first_party}
    out: list[str] = []
    for pkg in packages:
        toml = (pkg.root / "pyproject.toml").relative_to(root)
        used: set[str] = set()
        for path in sorted((pkg.root / "src").rglob("*.py")):
            rel = path.relative_to(root)
            dotted = ".".join(path.relative_to(pkg.root / "src").with_suffix("").parts)
            for line, module, optional in imports(path):
                optional = optional or dotted in TEST_SUPPORT
                if _stdlib(module) or module in pkg.modules:
                    continue
                dists = table.get(module)
                if not dists:
                    out.append(f"{rel}:{line}: imports {module!r}, which no installed distribution provides "
                               f"(install it, or add it to the import-name table in tests/test_packaging.py)")
                    continue
                used |= dists
                if dists & pkg.requires:
                    continue
                if optional and dists & pkg.extras:
                    continue
                want = " or ".join(sorted(dists))
                if dists & pkg.extras:
                    out.append(f"{rel}:{line}: imports {module!r} unconditionally, but {want} is only an "
                               f"optional dependency in {toml} (guard the import, or move it to dependencies)")
                else:
                    out.append(f"{rel}:{line}: imports {module!r} ({want}), which {toml} does not declare")
        for dist in sorted((pkg.requires | pkg.extras) - used - {pkg.dist}):
            if (pkg.dist, dist) in RUNTIME_ONLY:
                continue
            out.append(f"{toml}: declares {dist}, which nothing under {pkg.root.relative_to(root)}/src imports")
    return out


def test_every_package_declares_exactly_what_it_imports():
    found = problems(ROOT)
    assert not found, "dependencies out of step with imports:\n  " + "\n  ".join(found)


def test_the_kernel_is_kme_core():
    by_dist = {p.dist: p for p in discover(ROOT)}
    assert by_dist[KERNEL_DIST].modules == {"kme"}
    assert "kme" not in by_dist, "PyPI's `kme` is an unrelated project; the kernel is `kme-core`"
    for pkg in by_dist.values():
        assert "kme" not in pkg.requires | pkg.extras, f"{pkg.dist} depends on PyPI's unrelated `kme`"


def test_the_kernel_knows_which_package_provides_each_first_party_component():
    """``kme.registry.FIRST_PARTY`` (the install hint's table) is what the installed first-party plugins register."""
    from kme.plugins import build_plugin_manager
    from kme.registry import FIRST_PARTY

    first_party = {p.dist for p in discover(ROOT)} - {KERNEL_DIST}
    pm = build_plugin_manager()
    registered: dict[str, dict[str, str]] = {}
    for registry in (pm.editors, pm.locators, pm.datasets, pm.metrics, pm.aliases, pm.presets, pm.corpora):
        for name in registry:
            dist = pm.infos[registry.owner(name)].distribution
            if dist in first_party:
                registered.setdefault(registry.kind, {})[name] = dist
    assert {d for names in FIRST_PARTY.values() for d in names.values()} <= first_party
    for kind in set(registered) | set(FIRST_PARTY):
        assert FIRST_PARTY.get(kind, {}) == registered.get(kind, {}), (
            f"kme.registry's table of first-party {kind}s is out of step with what the plugins register")


def test_an_unknown_first_party_component_says_what_to_install(monkeypatch):
    import importlib_metadata

    from kme.components import Editor
    from kme.errors import UnknownComponentError
    from kme.registry import Registry

    real = importlib_metadata.version

    def version(dist):
        if dist == "kme-rome":
            raise importlib_metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(importlib_metadata, "version", version)
    editors = Registry("editor", Editor)  # nothing registered: kme-rome is "not installed"
    with pytest.raises(UnknownComponentError) as err:
        editors.get("rome", where="editors[0]")
    text = str(err.value)
    assert "unknown editor 'rome'; it is provided by kme-rome: pip install kme-rome" in text, text
    assert text.startswith("editors[0]: ")
    with pytest.raises(UnknownComponentError) as err:  # not first-party: did-you-mean only
        editors.get("my-editor")
    assert "pip install" not in str(err.value) and "(none installed)" in str(err.value)


def test_an_unknown_name_keeps_did_you_mean():
    from kme.plugins import build_plugin_manager

    pm = build_plugin_manager()
    with pytest.raises(Exception, match=r"unknown editor 'romee'; did you mean 'rome'\?"):
        pm.editors.get("romee")


def _package(root: Path, folder: str, dist: str, files: dict[str, str], *, deps=(KERNEL_DIST,),
             extras: dict[str, list[str]] | None = None, module: str | None = None) -> None:
    base = root / folder
    mod = module or dist.replace("-", "_")
    (base / "src" / mod).mkdir(parents=True)
    text = f'[project]\nname = "{dist}"\ndependencies = {list(deps)!r}\n'.replace("'", '"')
    if extras:
        text += "[project.optional-dependencies]\n" + "".join(
            f'{k} = {v!r}\n'.replace("'", '"') for k, v in extras.items())
    (base / "pyproject.toml").write_text(text)
    for name, body in {"__init__.py": "", **files}.items():
        (base / "src" / mod / name).write_text(body)


def test_the_checker_names_the_file_and_the_line(tmp_path):
    _package(tmp_path, "core", KERNEL_DIST, {"a.py": "import yaml\nimport os\n"}, deps=("pyyaml",), module="kme")
    _package(tmp_path, "plugins/kme-x", "kme-x", {
        "a.py": ("import kme\nimport torch\n"
                 "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import numpy\n"
                 "def f():\n    import importlib\n    importlib.import_module('pandas.io')\n"
                 "try:\n    import datasets\nexcept ImportError:\n    datasets = None\n"
                 "import nosuchmodule_xyz\n"),
    }, deps=(KERNEL_DIST, "click", "PyYAML"), extras={"hub": ["datasets"], "np": ["numpy"]})
    installed = {"yaml": frozenset({"pyyaml"}), "torch": frozenset({"torch"}), "numpy": frozenset({"numpy"}),
                 "pandas": frozenset({"pandas"}), "datasets": frozenset({"datasets"}),
                 "click": frozenset({"click"})}
    found = problems(tmp_path, installed)
    text = "\n".join(found)
    assert ("plugins/kme-x/src/kme_x/a.py:2: imports 'torch' (torch), which plugins/kme-x/pyproject.toml "
            "does not declare") in text
    assert "a.py:8: imports 'pandas' (pandas)" in text  # importlib.import_module inside a function
    assert "a.py:13: imports 'nosuchmodule_xyz', which no installed distribution provides" in text
    assert "plugins/kme-x/pyproject.toml: declares click, which nothing under plugins/kme-x/src imports" in text
    assert "declares pyyaml" in text
    assert "numpy" not in text and "datasets" not in text  # optional imports, declared as extras
    assert not any(p.startswith("core") for p in found), text
    assert len(found) == 5, text


def test_an_unconditional_import_of_an_extra_is_flagged(tmp_path):
    _package(tmp_path, "core", KERNEL_DIST, {}, deps=(), module="kme")
    _package(tmp_path, "plugins/kme-y", "kme-y", {"a.py": "import kme\nimport datasets\n"},
             extras={"hub": ["datasets"]})
    found = problems(tmp_path, {"datasets": frozenset({"datasets"})})
    assert found == ["plugins/kme-y/src/kme_y/a.py:2: imports 'datasets' unconditionally, but datasets is only "
                     "an optional dependency in plugins/kme-y/pyproject.toml (guard the import, or move it to "
                     "dependencies)"], found
