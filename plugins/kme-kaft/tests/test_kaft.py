"""KAFT: the mix asks what it states and what it does not, trains only answers, and a few
steps on a tiny model give a loadable base model folder whose manifest names the original;
an interrupted training resumes to the same weights and refuses other settings; bad params,
and naming kaft as a pipeline's editor, are refused."""

from __future__ import annotations

import random

import pytest
import torch
from click.testing import CliRunner

import kme
from kme.cli import make_cli
from kme.conformance import default_train_requests
from kme.testing import tiny_model, tiny_tokenizer

import kme_kaft.training as training
from kme_kaft.editor import KaftParams, KaftTrainer
from kme_kaft.mix import MixConfig, Pools, kaft_row
from kme_kaft.training import encode_row, train_kaft

FAST = {"steps": 4, "warmup": 1, "rows": 2, "rehearsal_rows": 2, "save_every": 2, "mix": {"max_demos": 2}}


@pytest.fixture(scope="module")
def pm() -> kme.KmePluginManager:
    return kme.build_plugin_manager()


def _cfg(**over):
    return KaftParams.model_validate({**FAST, **over}).config()


def test_rows_state_train_facts_and_train_only_answers():
    reqs = default_train_requests()
    pools = Pools.of(reqs)
    subjects = {r.subject for r in reqs}
    rng = random.Random(0)
    for _ in range(200):
        row = kaft_row(pools, MixConfig(max_demos=3), rng)
        learned = [t for t, learn in row if learn]
        assert learned and all(t.startswith(" ") for t in learned)  # answers only, as join_target gives them
        context = "".join(t for t, learn in row if not learn)
        for line in context.splitlines():
            if line.startswith(tuple(MixConfig().statement_prefixes)):
                assert any(s in line for s in subjects)


def test_relevant_questions_answer_the_stated_object_and_others_from_memory():
    reqs = default_train_requests()  # true objects London / Italian, new ones Paris / French
    pools = Pools.of(reqs)
    subjects = {r.subject for r in reqs}
    relation = {"born": "born", "birthplace": "born", "speaks": "speaks", "language": "speaks"}
    rng = random.Random(1)
    kinds = {"context": 0, "memory": 0}
    for _ in range(300):
        row = kaft_row(pools, MixConfig(max_demos=0, max_distractors=0, counterfactual_p=1.0), rng)
        stated, question, answer = row[-3][0], row[-2][0], row[-1][0].strip()
        def about(text: str) -> tuple[str, str]:
            return (next(s for s in subjects if s in text), next(v for k, v in relation.items() if k in text))
        same = about(stated) == about(question)
        if answer in ("Paris", "French"):
            assert same and answer in stated
            kinds["context"] += 1
        else:
            assert answer in ("London", "Italian") and not same
            kinds["memory"] += 1
    assert kinds["context"] > 100 and kinds["memory"] > 100


def test_phrasings_are_the_relations_templates_seen_in_the_requests():
    reqs = default_train_requests()
    pools = Pools.of(reqs)
    assert set(pools.phrasings) == {"born", "speaks"}
    assert "The birthplace of {} is" in pools.phrasings["born"] and "{} was born in" in pools.phrasings["born"]
    assert all(t.count("{}") == 1 for ts in pools.phrasings.values() for t in ts)
    assert Pools.of(reqs, phrasings=False).phrasings == {}


def test_encode_row_scores_answers_as_the_kernel_scores_targets():
    m = tiny_model("gpt2")
    row = [("New Fact: Carol White was born in Paris\nCarol White was born in", False), (" Paris", True)]
    ids, labels = encode_row(m.tokenizer, row, 512)
    n = len(m.target_ids("Carol White was born in", "Paris"))
    assert labels[-n:] == ids[-n:] and set(labels[:-n]) == {-100}
    assert encode_row(m.tokenizer, row, 5) is None


def test_trains_a_loadable_base_model_and_leaves_the_original(tmp_path, pm):
    m = tiny_model("gpt2", pm)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    metrics = train_kaft(m, default_train_requests(), tmp_path / "kaft", _cfg())
    assert all(torch.equal(before[k], v) for k, v in m.model.state_dict().items())
    assert metrics["steps"] == 4 and metrics["kaft_loss"] > 0 and metrics["rehearsal_texts"] > 0
    manifest = kme.read_trained_manifest(tmp_path / "kaft")
    assert manifest["kind"] == "base-model" and manifest["base_fingerprint"] == m.base_fingerprint
    assert not (tmp_path / "kaft" / "train-state.pt").exists()
    new = kme.load_model(str(tmp_path / "kaft"), pm)
    assert new.base_fingerprint != m.base_fingerprint
    assert torch.isfinite(new.next_token_logprobs(["Carol White was born in"])).all()


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, pm, monkeypatch):
    reqs = default_train_requests()
    train_kaft(tiny_model("gpt2", pm), reqs, tmp_path / "whole", _cfg())
    calls = {"n": 0}
    real = training._loss

    def interrupt_at_third(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(training, "_loss", interrupt_at_third)
    with pytest.raises(KeyboardInterrupt):
        train_kaft(tiny_model("gpt2", pm), reqs, tmp_path / "cut", _cfg())
    assert kme.load_train_state(tmp_path / "cut")["step"] == 2
    monkeypatch.setattr(training, "_loss", real)
    with pytest.raises(kme.ConfigError, match="another base model, settings or requests"):
        train_kaft(tiny_model("gpt2", pm), reqs, tmp_path / "cut", _cfg(lr=1e-2))
    with pytest.raises(kme.ConfigError, match="another base model"):
        train_kaft(tiny_model("gpt2", pm, seed=1), reqs, tmp_path / "cut", _cfg())
    train_kaft(tiny_model("gpt2", pm), reqs, tmp_path / "cut", _cfg())
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("params, message", [
    ({"steps": 0}, "steps"),
    ({"steps": 10, "warmup": 10}, "warmup"),
    ({"lr": -1}, "lr"),
    ({"mix": {"counterfactual_p": 1.5}}, "counterfactual_p"),
    ({"mix": {"statement_prefixes": []}}, "statement_prefixes"),
    ({"epochs": 3}, "epochs"),
])
def test_bad_params_are_refused(params, message):
    with pytest.raises(kme.ConfigError, match=message):
        KaftTrainer.parse_params(params)


def test_too_few_requests_and_an_unknown_corpus_are_refused(tmp_path, pm):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.ConfigError, match="at least 2 train requests"):
        train_kaft(m, default_train_requests()[:1], tmp_path / "a", _cfg())
    with pytest.raises(kme.KmeError, match="nosuch"):
        train_kaft(m, default_train_requests(), tmp_path / "b", _cfg(corpus="nosuch"))


def test_kme_train_writes_a_base_model_and_a_pipeline_refuses_kaft_as_an_editor(tmp_path, pm):
    base = tmp_path / "base"
    tiny_model("gpt2", pm).model.save_pretrained(str(base))
    tiny_tokenizer().save_pretrained(str(base))
    cli = make_cli(pm)
    out = tmp_path / "kaft"
    args = ["train", "kaft", "--model", str(base), "--dataset", "factworld", "--limit", "30", "--out", str(out),
            "--no-progress"] + [f"--params={k}={v}" for k, v in FAST.items()]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"model: {out}" in r.output and "editors:" not in r.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "already holds a trained checkpoint" in str(again.exception)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"model: {out}\ndataset: {{name: factworld, limit: 2}}\neditors: [kaft]\n"
                        "metrics: [efficacy_score]\n")
    bad = CliRunner().invoke(cli, ["validate", str(pipeline)])
    assert bad.exit_code != 0 and "trains a new base model" in (bad.output + str(bad.exception))
    with pytest.raises(kme.ConfigError, match="edits nothing"):
        KaftTrainer().apply(kme.load_model(str(out), pm), default_train_requests()[:1])
