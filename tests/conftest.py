"""Shared fixtures for the kernel tests: throwaway plugins, tiny models, an installed
entry-point plugin package, and an in-process ``kme`` CLI runner."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def installed_plugin_dir(tmp_path_factory) -> Path:
    """Install tests/plugin_pkg (three entry points: one good, one broken, one misspelled)
    into a private directory and put it on sys.path, as pip would for a user."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(HERE / "plugin_pkg")], check=True,
                   stdout=subprocess.DEVNULL)
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))


@pytest.fixture
def pm():
    import toyplugins

    import kme

    return kme.build_plugin_manager([toyplugins], load_entrypoints=False)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    import toyplugins

    return toyplugins.save_tiny(tmp_path_factory.mktemp("tiny-gpt2"))


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


@pytest.fixture
def kme_cli(installed_plugin_dir, monkeypatch):
    """Run ``kme ARGS`` in-process; plugins come from entry points (incl. the test package)
    plus the toy plugins, which tests/toy_entry registers as a further entry point."""
    import toyplugins

    from kme import cli, plugins

    real = plugins.build_plugin_manager

    def build(extra=None, *, load_entrypoints=True):
        return real([toyplugins] + list(extra or []), load_entrypoints=load_entrypoints)

    monkeypatch.setattr(cli, "build_plugin_manager", build)

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(list(args))
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


def write_pipeline(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
