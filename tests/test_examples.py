"""Every pipeline and sweep under examples/ validates against the installed plugins (as
`kme validate` does, without loading a model), so a renamed param or component cannot leave
an example behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


@pytest.fixture(scope="module")
def pm():
    import kme

    return kme.build_plugin_manager()


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT / "examples")) for p in EXAMPLES])
def test_example_validates(path, pm):
    from kme.pipeline import load_pipeline, validate_components
    from kme.sweep import load_sweep

    doc = yaml.safe_load(path.read_text())
    if "base" in doc and "model" not in doc:
        assert load_sweep(path, pm).points
    else:
        validate_components(load_pipeline(str(path), []), pm, str(path))


def test_validate_accepts_a_sweep_file(kme_cli):
    r = kme_cli("validate", str(ROOT / "examples" / "sweeps" / "rome-memit.yaml"))
    assert r.code == 0 and "valid sweep (8 point(s))" in r.out, r
    r = kme_cli("validate", str(ROOT / "examples" / "sweeps" / "rome-memit.yaml"), "seed=1")
    assert r.code == 2 and "is a sweep file" in r.err, r
