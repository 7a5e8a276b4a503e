"""SERAC meets the editor contract with checkpoints trained here; queries in scope go to the
counterfactual model with the edit in context, the rest to the base model; training and its
command produce a complete checkpoint (the kernel's format, refused on another base model),
and an interrupted training resumes to the same weights."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import kme
from kme.cli import make_cli
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model, tiny_tokenizer

from kme_serac.checkpoint import SeracCheckpoint
from kme_serac.training import TrainConfig, scope_pairs, train_serac

CKPT = Path(tempfile.mkdtemp(prefix="kme-serac-test-")) / "ckpt"


def _train_requests() -> list[kme.EditRequest]:
    people = ["Alice Smith", "Bob Jones", "Carol White", "Dan Black", "Eve Stone", "Finn Gray"]
    out = []
    for i, s in enumerate(people):
        other = people[(i + 1) % len(people)]
        out.append(kme.EditRequest(
            case_id=f"born:{s}", prompt="{} was born in", subject=s, target_new="Paris", relation="born",
            paraphrase_prompts=[f"The birthplace of {s} is"],
            neighborhood=[kme.Probe(prompt=f"{other} was born in", target="London")]))
        out.append(kme.EditRequest(
            case_id=f"speaks:{s}", prompt="{} speaks", subject=s, target_new="French", relation="speaks",
            paraphrase_prompts=[f"The language of {s} is"],
            neighborhood=[kme.Probe(prompt=f"{other} speaks", target="Italian")]))
    return out


@pytest.fixture(scope="module", autouse=True)
def checkpoint():
    pm = kme.build_plugin_manager()
    train_serac(tiny_model("gpt2", pm), _train_requests(), CKPT,
                TrainConfig(classifier_steps=150, counterfactual_steps=20, batch_size=16, holdout=0.2,
                            classifier_lr=2e-3))
    yield CKPT
    shutil.rmtree(CKPT.parent, ignore_errors=True)


class TestSeracConformance(EditorConformance):
    editor_name = "serac"
    # the kit trains a tiny checkpoint per family with these (a checkpoint is bound to its base)
    train_params = {"classifier_steps": 20, "counterfactual_steps": 5, "batch_size": 8, "holdout": 0.0}


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def test_checkpoint_holds_both_models_and_a_record(checkpoint, pm):
    from safetensors import safe_open

    meta = json.loads((checkpoint / "manifest.json").read_text())
    assert meta["editor"] == "serac" and meta["base_fingerprint"] == tiny_model("gpt2", pm).base_fingerprint
    assert meta["config"]["format_version"] == 2 and meta["config"]["training"]["classifier_steps"] == 150
    with safe_open(str(checkpoint / "weights.safetensors"), "pt") as f:
        names = set(f.keys())
    assert {n.split(".")[0] for n in names} == {"classifier", "counterfactual"}
    assert "classifier.score.weight" in names
    assert not (checkpoint / "train-state.pt").exists()
    t = meta["metrics"]
    assert t["requests"] + t["held_out_requests"] == 12 and t["held_out_requests"] > 0
    assert t["classifier_final_loss"] < 0.6  # learned something beyond chance (0.69)
    assert set(t["held_out"]) >= {"in_scope_recall", "out_of_scope_rejection", "counterfactual_accuracy"}


def test_a_checkpoint_of_another_base_model_is_refused(checkpoint, pm, tmp_path):
    for other in (tiny_model("llama", pm), tiny_model("gpt2", pm, seed=1)):
        with pytest.raises(kme.ConfigError, match="trained on another base model"):
            other.edit("serac", default_requests()[:1], {"checkpoint": str(checkpoint)})
        assert other.stack == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "serac.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(kme.ConfigError, match="earlier format"):
        tiny_model("gpt2", pm).edit("serac", default_requests()[:1], {"checkpoint": str(old)})


def test_an_interrupted_training_resumes_to_the_same_weights(pm, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    base = tiny_model("gpt2", pm)
    cfg = TrainConfig(classifier_steps=6, counterfactual_steps=6, batch_size=4, holdout=0.0, save_every=2)
    train_serac(base, _train_requests(), tmp_path / "whole", cfg)
    real = kme.train_progress

    def interrupted(total, *, desc, start=0):
        for step, bar in real(total, desc=desc, start=start):
            if "counterfactual" in desc and step == 3:
                raise KeyboardInterrupt
            yield step, bar

    monkeypatch.setattr(kme, "train_progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_serac(base, _train_requests(), tmp_path / "cut", cfg)
    monkeypatch.setattr(kme, "train_progress", real)
    state = kme.load_train_state(tmp_path / "cut")
    assert state["phase"] == "counterfactual" and state["fit"]["step"] == 3
    assert not (tmp_path / "cut" / "manifest.json").exists()
    with pytest.raises(kme.ConfigError, match="another SERAC training run"):
        train_serac(base, _train_requests()[:10], tmp_path / "cut", cfg)
    train_serac(base, _train_requests(), tmp_path / "cut", cfg)
    assert not (tmp_path / "cut" / "train-state.pt").exists()
    a, b = load_file(str(tmp_path / "whole" / "weights.safetensors")), \
        load_file(str(tmp_path / "cut" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_scope_pairs_have_hard_negatives():
    import random

    pos, neg = scope_pairs(_train_requests(), random.Random(0))
    edit = "Alice Smith was born in Paris"
    assert (edit, "The birthplace of Alice Smith is", "Paris") in pos
    assert (edit, "Bob Jones was born in") in neg  # neighbourhood: same relation, other subject
    assert (edit, "Alice Smith speaks") in neg  # same subject, other relation


def test_in_scope_queries_go_to_the_counterfactual_model(pm, checkpoint):
    m = tiny_model("gpt2", pm)
    r = default_requests()[1]
    prompts = [r.text, "The capital of Spain is"]
    base = m.score(prompts, ["Paris", "Madrid"])
    ck = SeracCheckpoint.load(checkpoint, m)
    router = ck.router(pm)
    # threshold ~0: every query is in scope of the (only) cached edit
    m.edit("serac", [r], {"checkpoint": str(checkpoint), "threshold": 1e-6})
    ctx = ck.context("Alice Smith was born in Paris")
    assert m.memory_contexts(prompts) == [ctx, ctx]
    routed = m.score(prompts, ["Paris", "Madrid"])
    expect = router.score([ctx + p for p in prompts], ["Paris", "Madrid"])
    assert [s.logprob for s in routed] == pytest.approx([s.logprob for s in expect], abs=1e-5)
    m.undo()
    # threshold ~1: nothing is in scope, the base model answers
    m.edit("serac", [r], {"checkpoint": str(checkpoint), "threshold": 1 - 1e-9})
    assert m.memory_contexts(prompts) == ["", ""]
    assert [s.logprob for s in m.score(prompts, ["Paris", "Madrid"])] == \
        pytest.approx([s.logprob for s in base], abs=1e-6)


def test_the_classifier_picks_the_most_probable_edit(pm, checkpoint):
    m = tiny_model("gpt2", pm)
    for r in default_requests():
        m.edit("serac", [r], {"checkpoint": str(checkpoint), "threshold": 1e-6})
    ck = SeracCheckpoint.load(checkpoint, m)
    q = "Bob Jones speaks"
    edits = ["The capital of France is Rome", "Alice Smith was born in Paris", "Bob Jones speaks Italian"]
    probs = ck.scope_probs([(e, q) for e in edits])
    best = edits[max(range(3), key=lambda i: probs[i])]
    assert m.memory_contexts([q]) == [ck.context(best)]


def test_missing_checkpoint_is_a_clear_error(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.KmeError, match="needs a trained checkpoint"):
        m.edit("serac", default_requests()[:1])
    with pytest.raises(kme.KmeError, match="is not a trained checkpoint"):
        m.edit("serac", default_requests()[:1], {"checkpoint": str(tmp_path)})
    assert m.stack == []


def test_train_command_alias(pm, tmp_path):
    """`kme serac train` is `kme train serac` with SERAC's step options."""
    base = tmp_path / "base"
    tiny_model("gpt2", pm).model.save_pretrained(str(base))
    tiny_tokenizer().save_pretrained(str(base))
    cli = make_cli(pm)
    pm.hook.kme_register_commands(cli=cli)
    out = tmp_path / "serac"
    r = CliRunner().invoke(cli, ["serac", "train", "--model", str(base), "--dataset", "factworld", "--limit", "20",
                                 "--classifier-steps", "3", "--counterfactual-steps", "3", "--out", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (out / "manifest.json").exists() and "checkpoint:" in r.output
    manifest = kme.read_trained_manifest(out)
    assert manifest["config"]["training"]["classifier_steps"] == 3 and manifest["metrics"]["requests"] <= 20
    again = CliRunner().invoke(cli, ["serac", "train", "--model", str(base), "--dataset", "factworld", "--out",
                                     str(out)])
    assert again.exit_code != 0 and "already holds a trained checkpoint" in str(again.exception)
    m = kme.load_model(str(base), pm)
    m.edit("serac", default_requests()[:1], {"checkpoint": str(out)})
    assert torch.isfinite(m.next_token_logprobs(["The capital of France is"])).all()


def test_without_a_checkpoint_the_editor_trains_one_with_the_command_defaults(tmp_path, monkeypatch):
    import kme_serac.training as training

    from kme_serac.editor import SeracEditor

    seen = {}

    def fake_train(base, requests, out, cfg=None, log=None):
        seen.update(n=len(requests), out=str(out), cfg=cfg)
        return {}

    monkeypatch.setattr(training, "train_serac", fake_train)
    ed = SeracEditor()
    assert not ed.is_trained() and type(ed).capabilities.needs_training
    updates = ed.train(tiny_model("gpt2"), _train_requests(), str(tmp_path / "t"))
    assert updates == {"checkpoint": str(tmp_path / "t")}
    assert seen["n"] == 12 and seen["cfg"] == TrainConfig()  # what `kme train serac` uses by default
    ed = SeracEditor({"classifier_steps": 7, "seed": 3})
    ed.train(tiny_model("gpt2"), _train_requests(), str(tmp_path / "t"))
    assert seen["cfg"] == TrainConfig(classifier_steps=7, seed=3)  # training params reach the recipe
    assert SeracEditor({"checkpoint": str(CKPT)}).is_trained()
