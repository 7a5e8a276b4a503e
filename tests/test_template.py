"""The plugin template renders into a package that installs, is discovered, and passes the
conformance kit -- what a stranger gets in their first minutes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "contrib" / "kme-plugin-template"


def render(dest: Path, answers: dict[str, str]) -> Path:
    """Minimal cookiecutter rendering for the template's plain ``{{cookiecutter.x}}`` fields."""
    defaults = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    values = {**{k: v for k, v in defaults.items() if "{{" not in v}, **answers}
    values.setdefault("module_name", values["plugin_name"].lower().replace("-", "_"))
    values.setdefault("editor_name", values["plugin_name"])

    def sub(text: str) -> str:
        for k, v in values.items():
            text = text.replace("{{cookiecutter.%s}}" % k, v)
        assert "{{" not in text, text
        return text

    src = TEMPLATE / "kme-{{cookiecutter.plugin_name}}"
    for path in src.rglob("*"):
        if path.is_file():
            out = dest / sub(str(path.relative_to(TEMPLATE)))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(sub(path.read_text()))
    return dest / f"kme-{values['plugin_name']}"


def test_template_renders_installs_and_passes_conformance(tmp_path):
    pkg = render(tmp_path / "gen", {"plugin_name": "tinyrank", "description": "A tiny rank-one editor"})
    assert (pkg / "src" / "kme_tinyrank" / "__init__.py").is_file()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(pkg)], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, PYTHONPATH=str(site), KME_LOAD_PLUGINS="tinyrank")
    out = subprocess.run([sys.executable, "-m", "kme.cli", "plugins", "--json"], env=env, capture_output=True,
                         text=True, check=True).stdout
    info = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert info["tinyrank"]["distribution"] == "kme-tinyrank"
    assert info["tinyrank"]["provides"] == {"editors": ["tinyrank"]}
    shutil.copytree(pkg / "tests", tmp_path / "gen_tests")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "gen_tests")],
                       env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" in r.stdout and "failed" not in r.stdout
