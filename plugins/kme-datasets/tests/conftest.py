"""Shared fixtures: the fixture directory (small files in each dataset's published format,
invented content) and a loader that goes through the plugin registry like a pipeline does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def registry():
    import kme

    return kme.build_plugin_manager().datasets


@pytest.fixture(scope="session")
def load(registry):
    """``load(name, **options)`` -> list of EditRequest; relative paths resolve in fixtures/."""

    def _load(name: str, **opts):
        return make(name, **opts).load()

    def make(name: str, **opts):
        for key in ("path", "train_path", "relations_path", "patterns_path"):
            if isinstance(opts.get(key), str) and not os.path.isabs(opts[key]):
                opts[key] = str(FIXTURES / opts[key])
        return registry.get(name)(opts)

    _load.make = make
    return _load
