"""The three floors (docs: DESIGN "Three floors"), read from the source.

Every first-party package -- ``core/`` and each ``plugins/*`` / ``contrib/*`` folder with a
``pyproject.toml`` -- stands on one floor:

1. the kernel: distribution ``kme-core`` (import package ``kme``);
2. a family library: ``[tool.kme] floor = "library"`` in its ``pyproject.toml``
   (``kme-editlib``, ``kme-memlib``);
3. a leaf plugin (method, locator, dataset, metric, model): a ``kme`` entry point and no
   library declaration.

A package imports only floors below its own and libraries: the kernel imports no other
first-party package; a library imports the kernel and libraries; a leaf imports the kernel
and libraries, never another leaf. Every ``import`` / ``from ... import`` in the package's
``src/`` counts, including those inside functions and ``TYPE_CHECKING`` blocks, as does
``importlib.import_module("...")`` with a literal name. The same rule holds for the
first-party distributions a ``pyproject.toml`` depends on, and a first-party import must be
declared there.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

KERNEL, LIBRARY, PLUGIN = "kernel", "library", "plugin"
KERNEL_DIST = "kme-core"  # import package and CLI: `kme` (PyPI's `kme` is an unrelated project)


@dataclass
class Package:
    dist: str
    root: Path
    floor: str
    modules: set[str] = field(default_factory=set)  # top-level import names under src/
    depends: set[str] = field(default_factory=set)  # distributions named in [project] dependencies


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def discover(root: Path) -> tuple[list[Package], list[str]]:
    """The first-party packages under ``root`` and the problems found classifying them."""
    packages, problems = [], []
    tomls = [root / "core" / "pyproject.toml", *sorted(root.glob("plugins/*/pyproject.toml")),
             *sorted(root.glob("contrib/*/pyproject.toml"))]
    for toml in tomls:
        if not toml.is_file():
            continue
        data = tomllib.loads(toml.read_text())
        project = data.get("project", {})
        dist = project.get("name", toml.parent.name).lower()
        declared = data.get("tool", {}).get("kme", {}).get("floor")
        has_entry_point = bool(project.get("entry-points", {}).get("kme"))
        rel = toml.relative_to(root)
        if dist == KERNEL_DIST:
            floor = KERNEL
        elif declared == LIBRARY:
            floor = LIBRARY
        elif declared is not None:
            problems.append(f"{rel}: [tool.kme] floor = {declared!r}; the only declared floor is 'library'")
            continue
        elif has_entry_point:
            floor = PLUGIN
        else:
            problems.append(f"{rel}: neither a plugin (no `kme` entry point) nor a library "
                            f"(no `[tool.kme] floor = \"library\"`)")
            continue
        src = toml.parent / "src"
        modules = {p.name for p in src.iterdir() if (p / "__init__.py").is_file()} if src.is_dir() else set()
        modules |= {p.stem for p in src.glob("*.py")} if src.is_dir() else set()
        depends = {_dist_name(r) for r in project.get("dependencies", [])}
        packages.append(Package(dist, toml.parent, floor, modules, depends))
    return packages, problems


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, statement as written) for every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, ast.unparse(node)) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            out.append((node.lineno, node.args[0].value, ast.unparse(node)))
    return out


def _allowed(importer: Package, imported: Package) -> bool:
    if importer is imported or imported.floor == KERNEL:
        return True
    return importer.floor != KERNEL and imported.floor == LIBRARY


def _why(importer: Package, imported: Package) -> str:
    if importer.floor == KERNEL:
        return "the kernel imports no plugin or library"
    if importer.floor == LIBRARY:
        return "a library imports no plugin"
    return "a plugin imports no other plugin (move the shared code into a library)"


def violations(root: Path) -> list[str]:
    packages, problems = discover(root)
    by_module = {m: p for p in packages for m in p.modules}
    by_dist = {p.dist: p for p in packages}
    for pkg in packages:
        used: set[str] = set()
        for path in sorted((pkg.root / "src").rglob("*.py")):
            rel = path.relative_to(root)
            for line, module, stmt in _imports(path):
                target = by_module.get(module.split(".")[0])
                if target is None:
                    continue
                used.add(target.dist)
                if not _allowed(pkg, target):
                    problems.append(f"{rel}:{line}: `{stmt}` -- {pkg.dist} ({pkg.floor}) imports "
                                    f"{target.dist} ({target.floor}); {_why(pkg, target)}")
        toml = (pkg.root / "pyproject.toml").relative_to(root)
        for dist in sorted(pkg.depends & set(by_dist)):
            if not _allowed(pkg, by_dist[dist]):
                problems.append(f"{toml}: depends on {dist} ({by_dist[dist].floor}); {_why(pkg, by_dist[dist])}")
        for dist in sorted(used - pkg.depends - {pkg.dist}):
            problems.append(f"{toml}: its source imports {dist} but [project] dependencies do not name it")
    return problems


def test_every_package_stands_on_its_floor():
    problems = violations(ROOT)
    assert not problems, "imports that break the three floors:\n  " + "\n  ".join(problems)


def test_the_floors_are_what_the_design_says():
    packages, _ = discover(ROOT)
    floors = {p.dist: p.floor for p in packages}
    assert floors[KERNEL_DIST] == KERNEL
    assert floors["kme-editlib"] == LIBRARY and floors["kme-memlib"] == LIBRARY
    assert {"kme-memit", "kme-pmet", "kme-alphaedit", "kme-ike", "kme-serac", "kme-factworld",
            "kme-metrics"} <= {d for d, f in floors.items() if f == PLUGIN}


def _package(root: Path, folder: str, dist: str, files: dict[str, str], *, deps: tuple[str, ...] = (KERNEL_DIST,),
             library: bool = False, module: str | None = None) -> None:
    base = root / folder
    mod = module or dist.replace("-", "_")
    (base / "src" / mod).mkdir(parents=True)
    entry = "" if library else f'[project.entry-points.kme]\nx = "{mod}"\n'
    floor = '[tool.kme]\nfloor = "library"\n' if library else ""
    (base / "pyproject.toml").write_text(f'[project]\nname = "{dist}"\ndependencies = {list(deps)!r}\n'
                                         .replace("'", '"') + entry + floor)
    for name, text in {"__init__.py": "", **files}.items():
        (base / "src" / mod / name).write_text(text)


def test_the_checker_names_the_file_and_the_import(tmp_path):
    _package(tmp_path, "core", KERNEL_DIST, {}, module="kme")
    _package(tmp_path, "plugins/kme-lib", "kme-lib", {"a.py": "import kme\nfrom kme_leaf.x import y\n"},
             library=True)
    _package(tmp_path, "plugins/kme-leaf", "kme-leaf", {"x.py": "import kme_lib\n"}, deps=(KERNEL_DIST, "kme-lib"))
    _package(tmp_path, "plugins/kme-other", "kme-other",
             {"e.py": "def f():\n    from kme_leaf import x\n    import importlib\n"
                      "    importlib.import_module('kme_leaf.x')\n"},
             deps=(KERNEL_DIST, "kme-leaf"))
    problems = violations(tmp_path)
    text = "\n".join(problems)
    assert ("plugins/kme-lib/src/kme_lib/a.py:2: `from kme_leaf.x import y` -- kme-lib (library) imports "
            "kme-leaf (plugin); a library imports no plugin") in text
    assert "plugins/kme-other/src/kme_other/e.py:2: `from kme_leaf import x`" in text
    assert "e.py:4: `importlib.import_module('kme_leaf.x')`" in text
    assert "plugins/kme-other/pyproject.toml: depends on kme-leaf (plugin)" in text
    assert "plugins/kme-lib/pyproject.toml: its source imports kme-leaf" in text
    assert not any("kme-leaf/src" in p for p in problems)  # a leaf may import a library
    assert len(problems) == 5, text
