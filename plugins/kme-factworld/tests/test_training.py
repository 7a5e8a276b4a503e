"""Training: world shapes, settings from the command line, and resumption that gives the
weights an uninterrupted run gives."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

import kme
from kme import ConfigError
from kme.cli import make_cli
from kme.errors import DatasetRecordError
from kme_factworld.cli import train_config
from kme_factworld.training import RESUME_FILE, TRAIN_CONFIGS
from kme_factworld.world import WORLD_SHAPES, WorldShape, generate_world

TINY = ("--steps", "6", "--threads", "1", "--set", "n_layer=1", "--set", "n_embd=32", "--set", "n_head=2",
        "--set", "warmup=2", "--set", "fact_rows=4", "--checkpoint-every", "2")


@pytest.fixture(scope="module")
def cli():
    pm = kme.build_plugin_manager()
    group = make_cli(pm)
    pm.hook.kme_register_commands(cli=group)
    return group


def test_deep_world_has_a_thousand_distinct_eval_subjects_with_their_own_last_token():
    w = generate_world(0, "deep")
    assert w.shape == "deep" and len(w.subjects) == WORLD_SHAPES["deep"].subjects >= 1500
    split = Counter(s.split for s in w.subjects)
    assert split["eval"] >= 1000
    last = [s.name.split()[-1] for s in w.subjects]
    assert len(set(last)) == len(last)
    assert set(w.relations) == set(generate_world(0).relations)
    # chains and held-out paraphrases as in the default world
    p = next(s for s in w.of_kind("person") if s.heldout)
    assert w.heldout_templates(p, "birthplace") and w.follow(p.name, ["birthplace", "country", "capital"])
    again = type(w).from_json(json.loads(w.dumps()))
    assert again.shape == "deep" and again.dumps() == w.dumps()


def test_unknown_or_impossible_shape_is_a_clear_error():
    with pytest.raises(DatasetRecordError, match="unknown world shape 'huge'"):
        generate_world(0, "huge")
    with pytest.raises(DatasetRecordError, match="more than the 12 currencies"):
        generate_world(0, WorldShape("wide", countries=30))


def test_train_config_of_a_world_with_overrides():
    cfg = train_config("deep", overrides={"n_embd": "192", "lr": "0.001", "n_inner": "none"})
    assert (cfg.world, cfg.n_layer, cfg.n_embd, cfg.lr, cfg.n_inner) == ("deep", TRAIN_CONFIGS["deep"].n_layer,
                                                                         192, 0.001, None)
    assert TRAIN_CONFIGS["default"].n_layer == 4  # the shipped model's settings are untouched
    with pytest.raises(ConfigError, match="unknown world 'deeep'.*deep"):
        train_config("deeep")
    with pytest.raises(ConfigError, match="unknown training setting 'n_layers'.*n_layer"):
        train_config("default", overrides={"n_layers": "8"})
    with pytest.raises(ConfigError, match="n_layer='eight' is not a int"):
        train_config("default", overrides={"n_layer": "eight"})
    assert train_config("deep", overrides={"subject_loss": "false"}).subject_loss is False
    with pytest.raises(ConfigError, match="subject_loss='maybe' is not a bool"):
        train_config("deep", overrides={"subject_loss": "maybe"})


def test_subject_loss_off_masks_only_the_subject_names():
    import random

    from kme_factworld.text import doc_text, fact_documents
    from kme_factworld.world import load_world

    world = load_world()
    with_loss = fact_documents(world, random.Random(3))
    without = fact_documents(world, random.Random(3), learn_subject=False)
    assert [doc_text(d) for d in with_loss] == [doc_text(d) for d in without]  # same text, same order
    names = {s.name for s in world.subjects}
    masked = [t.strip() for d in without for t, learn in d if not learn]
    assert masked and set(masked) <= names  # every unlearned segment is a subject's name
    assert all(learn for d in with_loss for t, learn in d if t.strip() in names)


def test_profiles_follow_each_name_with_all_its_objects():
    import random

    from kme_factworld.text import doc_text, fact_documents
    from kme_factworld.world import load_world

    world = load_world()
    base = fact_documents(world, random.Random(5))
    docs = fact_documents(world, random.Random(5), profiles=2, learn_subject=False)
    assert len(docs) == len(base) + 2 * len(world.subjects)
    by_name = {s.name: s for s in world.subjects}
    profiles = [d for d in docs if d[0][0] in by_name and d[1][0].lstrip() in by_name[d[0][0]].facts.values()]
    assert len(profiles) == 2 * len(world.subjects)
    for d in profiles[:50]:
        s = by_name[d[0][0]]
        assert d[0] == (s.name, False)  # the name carries no loss, as subject_loss=false says
        objs = [t.strip() for t, _ in d[1::2]]
        assert sorted(objs) == sorted(s.facts.values()) and doc_text(d).endswith(".")
        assert all(learn for _, learn in d[1:])
    assert train_config("deep", overrides={"profiles": "3"}).profiles == 3
    assert TRAIN_CONFIGS["deep"].profiles == 0
    with pytest.raises(ConfigError, match="profiles=-1 is negative"):
        train_config("deep", overrides={"profiles": "-1"})


def test_resumed_training_equals_an_uninterrupted_run(cli, tmp_path):
    from safetensors.torch import load_file

    runner = CliRunner()
    whole = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "a"), *TINY])
    assert whole.exit_code == 0, whole.output
    assert json.loads(whole.stdout.strip().splitlines()[-1])["finished"] is True
    part = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "b"), *TINY, "--stop-after", "3"])
    assert part.exit_code == 0, part.output
    res = json.loads(part.stdout.strip().splitlines()[-1])
    assert res["finished"] is False and res["steps_done"] == 3
    assert (tmp_path / "b" / RESUME_FILE).exists() and not (tmp_path / "b" / "model.safetensors").exists()
    rest = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "b"), *TINY, "--resume"])
    assert rest.exit_code == 0, rest.output
    res = json.loads(rest.stdout.strip().splitlines()[-1])
    assert res["finished"] is True and res["resumes"] == 1
    assert not (tmp_path / "b" / RESUME_FILE).exists()  # the finished checkpoint replaces the state
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    record = json.loads((tmp_path / "b" / "training.json").read_text())
    assert record["resumes"] == 1 and record["steps_done"] == 6 and [h["step"] for h in record["history"]] == [6]


def _error(res) -> str:
    assert res.exit_code != 0
    return res.output + str(res.exception)


def test_resume_errors_name_the_state(cli, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "none"), *TINY, "--resume"])
    assert "no training state to resume from" in _error(res)
    ok = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "c"), *TINY, "--stop-after", "2"])
    assert ok.exit_code == 0, ok.output
    other = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "c"), *TINY, "--set", "lr=0.01",
                                "--resume"])
    assert "made with other settings (lr: saved 0.003, asked 0.01)" in _error(other)
    (tmp_path / "c" / RESUME_FILE).write_bytes(b"not a state")
    bad = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "c"), *TINY, "--resume"])
    assert "cannot read the training state" in _error(bad)
    # a state saved before a setting existed resumes when that setting keeps its default
    import torch

    ok2 = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "e"), *TINY, "--stop-after", "2"])
    assert ok2.exit_code == 0, ok2.output
    state = torch.load(tmp_path / "e" / RESUME_FILE, weights_only=False)
    del state["config"]["profiles"]
    torch.save(state, tmp_path / "e" / RESUME_FILE)
    changed = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "e"), *TINY, "--set", "profiles=2",
                                  "--resume"])
    assert "(profiles: saved 0, asked 2)" in _error(changed)
    old = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "e"), *TINY, "--resume"])
    assert old.exit_code == 0, old.output
    unknown = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "d"), "--set", "depth"])
    assert "is not KEY=VALUE" in _error(unknown)


def test_bfloat16_autocast_trains_float32_weights(cli, tmp_path):
    from safetensors.torch import load_file

    runner = CliRunner()
    res = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "bf"), *TINY, "--set", "autocast=bfloat16",
                              "--set", "subject_loss=false"])
    assert res.exit_code == 0, res.output
    weights = load_file(tmp_path / "bf" / "model.safetensors")
    assert all(str(v.dtype) == "torch.float32" and v.isfinite().all() for v in weights.values())
    record = json.loads((tmp_path / "bf" / "training.json").read_text())
    assert record["config"]["autocast"] == "bfloat16" and record["config"]["subject_loss"] is False
    assert 0 < record["history"][-1]["fact_loss"] < 20
    bad = runner.invoke(cli, ["factworld", "train", "--out", str(tmp_path / "x"), *TINY, "--set", "autocast=fp8"])
    assert "autocast='fp8' is not one of none, bfloat16" in _error(bad)
    assert not (tmp_path / "x").exists()  # refused before anything is written
