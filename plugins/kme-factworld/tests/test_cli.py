"""`kme factworld ...` through the kme command line (click group with plugin commands)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import kme
from kme.cli import make_cli
from kme_factworld import CHECKPOINT_DIR
from kme_factworld.world import WORLD_PATH


@pytest.fixture(scope="module")
def cli():
    pm = kme.build_plugin_manager()
    group = make_cli(pm)
    pm.hook.kme_register_commands(cli=group)
    return group


def test_world_verify_and_write(cli, tmp_path):
    res = CliRunner().invoke(cli, ["factworld", "world", "--verify"])
    assert res.exit_code == 0, res.output
    assert "matches" in res.output
    out = tmp_path / "w.json"
    res = CliRunner().invoke(cli, ["factworld", "world", "--seed", "0", "--out", str(out)])
    assert res.exit_code == 0 and out.read_text() == WORLD_PATH.read_text()


def test_corpus_command(cli, tmp_path):
    out = tmp_path / "corpus.txt"
    res = CliRunner().invoke(cli, ["factworld", "corpus", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert len(lines) > 5000 and all(lines)


@pytest.mark.skipif(not (CHECKPOINT_DIR / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_check_json_keys(cli):
    res = CliRunner().invoke(cli, ["factworld", "check", "--json", "--sample", "150", "--no-context"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)  # progress bars, if any, go to stderr
    for key in ("recall_train", "recall_heldout_paraphrase", "recall_novel_template", "checkpoint_mb", "parameters"):
        assert key in d
    assert d["recall_train"] >= 0.97 and 0 < d["checkpoint_mb"] <= 15 and d["parameters"] > 1_000_000
