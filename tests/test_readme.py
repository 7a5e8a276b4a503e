"""README's Python example runs offline, as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    model, before, after = ns["model"], ns["before"], ns["after"]
    assert after.logprob > before.logprob
    assert (tmp_path / "runs" / "readme-patch" / "manifest.json").is_file()
    assert model.stack == []
    fresh = ns["kme"].load_model("factworld", ns["pm"]).model.state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in model.model.state_dict().items())
