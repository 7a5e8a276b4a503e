"""``kme train NAME``: trains a registered trained editor on a dataset's train split only,
writes a checkpoint naming its base model (refused on another base), refuses to replace a
finished checkpoint without --overwrite or to restart an interrupted one without --resume,
resumes to the same weights, and says clearly what is wrong with a bad editor or dataset."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

import kme
from kme.cli import main
from kme.conformance import default_requests
from kme.testing import tiny_model

#: SERAC with a few steps on a dozen fact-world training requests: seconds, not minutes.
FAST = ["--limit", "12", "--params", "classifier_steps=2", "--params", "counterfactual_steps=3",
        "--params", "batch_size=4", "--params", "holdout=0", "--params", "save_every=1", "--no-progress"]


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


@pytest.fixture(scope="module")
def pm():
    import toyplugins

    return kme.build_plugin_manager([toyplugins])


@pytest.fixture(scope="module")
def kme_cli(pm):
    def run(*args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args), pm=pm)
        return Result(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture(scope="module")
def factworld(pm):
    return kme.load_model("factworld", pm)


@pytest.fixture(scope="module")
def trained(kme_cli, tmp_path_factory):
    """SERAC trained by `kme train serac` with the default --out, from a scratch directory."""
    cwd = tmp_path_factory.mktemp("cwd")
    here = os.getcwd()
    os.chdir(cwd)
    try:
        r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", *FAST)
    finally:
        os.chdir(here)
    return cwd / "trained" / "serac-factworld", r


def test_trains_serac_into_the_default_folder_and_says_how_to_use_it(trained):
    out, r = trained
    assert r.code == 0, r
    assert "checkpoint: trained/serac-factworld" in r.out
    assert "editors: [{name: serac, params: {checkpoint: trained/serac-factworld}}]" in r.out
    assert "on 12 request(s) of factworld's train split" in r.err
    assert (out / "weights.safetensors").is_file() and not (out / "train-state.pt").exists()


def test_the_manifest_names_editor_base_config_and_metrics(trained, factworld):
    out, _ = trained
    m = kme.read_trained_manifest(out)
    assert m["editor"] == "serac" and m["base_model"] == "factworld"
    assert m["base_fingerprint"] == factworld.base_fingerprint
    assert {"format", "config", "metrics", "tensors", "kme_version", "created"} <= set(m)
    assert m["config"]["training"]["classifier_steps"] == 2 and m["config"]["training"]["counterfactual_steps"] == 3
    assert m["metrics"]["requests"] == 12 and m["metrics"]["seconds"] >= 0
    ck = kme.load_trained(out, editor="serac", model=factworld)
    assert len(ck.tensors) == m["tensors"] and ck.config == m["config"]


def test_the_checkpoint_edits_its_base_model(trained, factworld):
    out, _ = trained
    factworld.edit("serac", default_requests()[:1], {"checkpoint": str(out)})
    try:
        assert torch.isfinite(factworld.next_token_logprobs(["The capital of France is"])).all()
    finally:
        factworld.undo()


def test_the_checkpoint_is_refused_on_another_base_and_for_another_editor(trained, pm):
    out, _ = trained
    for other in (tiny_model("gpt2", pm), tiny_model("llama", pm)):
        with pytest.raises(kme.ConfigError, match="trained on another base model"):
            kme.load_trained(out, editor="serac", model=other)
        with pytest.raises(kme.ConfigError, match="another base model"):
            other.edit("serac", default_requests()[:1], {"checkpoint": str(out)})
        assert other.stack == []
    with pytest.raises(kme.ConfigError, match="trained for editor 'serac', not 'mend'"):
        kme.load_trained(out, editor="mend", model=tiny_model("gpt2", pm))


def test_a_finished_checkpoint_is_replaced_only_with_overwrite(kme_cli, tmp_path):
    out = tmp_path / "ck"
    assert kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out),
                   *FAST).code == 0
    first = kme.read_trained_manifest(out)
    (out / "weights.safetensors").write_bytes(b"stale")
    r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out), *FAST)
    assert r.code == 2 and "already holds a trained checkpoint" in r.err and "--overwrite" in r.err, r
    assert (out / "weights.safetensors").read_bytes() == b"stale"  # untouched
    r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out),
                "--resume", *FAST)
    assert r.code == 2 and "nothing to resume" in r.err, r
    r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out),
                "--overwrite", *FAST)
    assert r.code == 0, r
    assert kme.read_trained_manifest(out)["base_fingerprint"] == first["base_fingerprint"]
    assert (out / "weights.safetensors").read_bytes() != b"stale"


def test_an_interrupted_training_needs_resume_and_resumes_to_the_same_weights(kme_cli, trained, tmp_path,
                                                                               monkeypatch):
    from safetensors.torch import load_file

    out = tmp_path / "ck"
    real = kme.train_progress

    def interrupted(total, *, desc, start=0):
        for step, bar in real(total, desc=desc, start=start):
            if "counterfactual" in desc and step == 1:
                raise KeyboardInterrupt
            yield step, bar

    monkeypatch.setattr(kme, "train_progress", interrupted)
    r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out), *FAST)
    monkeypatch.setattr(kme, "train_progress", real)
    assert r.code == 130, r
    assert (out / "train-state.pt").is_file() and not (out / "manifest.json").exists()
    r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out), *FAST)
    assert r.code == 2 and "interrupted training" in r.err and "pass --resume" in r.err, r
    r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out),
                "--resume", "--overwrite", *FAST)
    assert r.code == 2 and "exclude each other" in r.err, r
    r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out),
                "--resume", *FAST)
    assert r.code == 0 and "resuming serac" in r.err, r
    assert not (out / "train-state.pt").exists()
    whole, _ = trained  # the same settings without an interruption
    a, b = load_file(str(whole / "weights.safetensors")), load_file(str(out / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_different_settings_is_refused(kme_cli, tmp_path, monkeypatch):
    out = tmp_path / "ck"
    real = kme.train_progress

    def interrupted(total, *, desc, start=0):
        for step, bar in real(total, desc=desc, start=start):
            if step == 1:
                raise KeyboardInterrupt
            yield step, bar

    monkeypatch.setattr(kme, "train_progress", interrupted)
    assert kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out),
                   *FAST).code == 130
    monkeypatch.setattr(kme, "train_progress", real)
    r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(out), "--resume",
                *FAST, "--params", "classifier_lr=0.01")
    assert r.code == 2 and "another SERAC training run" in r.err, r


def test_unknown_and_untrainable_editors_are_clear_errors(kme_cli):
    r = kme_cli("train", "serak", "--model", "factworld", "--dataset", "factworld")
    assert r.code == 2 and "unknown editor 'serak'" in r.err and "serac" in r.err, r
    r = kme_cli("train", "rome", "--model", "factworld", "--dataset", "factworld")
    assert r.code == 2 and "editor 'rome' has nothing to train" in r.err, r
    hint = r.err.split("trainable editors:")[1]
    assert "serac" in hint and "toy_trained" in hint and "rome" not in hint


def test_bad_params_and_datasets_are_clear_errors_before_the_model_loads(kme_cli, tmp_path):
    base = ["train", "serac", "--model", "no/such-model", "--out", str(tmp_path / "x")]
    r = kme_cli(*base, "--dataset", "toy")
    assert r.code == 2 and "--dataset: dataset 'toy' has no train split" in r.err, r
    r = kme_cli(*base, "--dataset", "factworld", "--dataset-params", "{not json")
    assert r.code == 2 and "--dataset-params: not valid JSON" in r.err, r
    r = kme_cli(*base, "--dataset", "factworld", "--dataset-params", '{"split": "train"}')
    assert r.code == 2 and "train split is evaluated" in r.err, r
    r = kme_cli(*base, "--dataset", "factworld", "--params", "classifier_steps=-1")
    assert r.code == 2 and "--params" in r.err and "classifier_steps" in r.err, r
    r = kme_cli(*base, "--dataset", "factworld", "--params", "no_such=1")
    assert r.code == 2 and "no_such" in r.err, r
    assert not (tmp_path / "x").exists()


def test_a_folder_that_is_no_checkpoint_is_left_alone(kme_cli, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        r = kme_cli("train", "serac", "--model", "factworld", "--dataset", "factworld", "--out", str(tmp_path),
                    *FAST, *extra)
        assert r.code == 2 and "holds no trained checkpoint" in r.err, r
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_any_trained_editor_and_the_help(kme_cli, tmp_path, model_dir):
    """The command is generic: a toy trained editor that writes no manifest still trains (with
    a warning), and the pipeline line shows the params its train() returned."""
    out = tmp_path / "toy"
    r = kme_cli("train", "toy_trained", "--model", model_dir, "--dataset", "toy", "--dataset-params",
                '{"with_train_split": true}', "--out", str(out), "-q")
    assert r.code == 0, r
    assert (out / "weights.txt").read_text() == "6"
    assert f"editors: [{{name: toy_trained, params: {{checkpoint: {out}}}}}]" in r.out
    assert "wrote no manifest.json" in r.err
    r = kme_cli("train", "--help")
    assert r.code == 0 and "Trainable editors:" in r.out
    listed = r.out.split("Trainable editors:")[1]
    assert "serac" in listed and "toy_trained" in listed and "rome" not in listed


def test_model_slug():
    from kme.train_cli import default_out, model_slug

    assert model_slug("factworld") == "factworld"
    assert model_slug("meta-llama/Llama-3-8B") == "meta-llama--Llama-3-8B"
    assert model_slug(str(Path(__file__).parent)) == "tests"
    assert default_out("mend", "gpt2-xl") == Path("trained/mend-gpt2-xl")


class _BaseTrainer(kme.Editor):
    """Trains a new base model (``trains_base``): writes a from_pretrained folder, edits nothing."""

    name = "toy_base_trainer"
    description = "writes a new base model; for kernel tests"
    capabilities = kme.Capabilities(kind="parametric", needs_training=True, trains_base=True)

    def is_trained(self) -> bool:
        return False

    def train(self, model, requests, out_dir):
        model.model.save_pretrained(out_dir)
        model.tokenizer.save_pretrained(out_dir)
        kme.save_trained(out_dir, editor=self.name, model=model, tensors={}, config={"requests": len(requests)})
        return {}

    def apply(self, model, requests, location=None):  # pragma: no cover - refused before it runs
        raise AssertionError("a base trainer is never applied")


class _BaseTrainerPlugin:
    @kme.hookimpl
    def kme_register_editors(self, register):
        register(_BaseTrainer)


def test_a_component_that_trains_a_base_prints_a_model_line_and_is_refused_as_an_editor(tmp_path, model_dir):
    import toyplugins

    pm = kme.build_plugin_manager([toyplugins, _BaseTrainerPlugin()])
    out = tmp_path / "base"
    buf_out, buf_err = io.StringIO(), io.StringIO()
    with redirect_stdout(buf_out), redirect_stderr(buf_err):
        code = main(["train", "toy_base_trainer", "--model", model_dir, "--dataset", "toy", "--dataset-params",
                     '{"with_train_split": true}', "--out", str(out), "-q"], pm=pm)
    assert code == 0, buf_err.getvalue()
    assert f"model: {out}" in buf_out.getvalue() and "editors:" not in buf_out.getvalue()
    assert kme.load_model(str(out), pm) is not None  # the folder is a model a pipeline can name
    spec = tmp_path / "p.yaml"
    spec.write_text(f"model: {model_dir}\ndataset: toy\neditors: [toy_base_trainer]\nmetrics: [toy_logprob]\n")
    with redirect_stdout(io.StringIO()), redirect_stderr(buf_err := io.StringIO()):
        code = main(["validate", str(spec)], pm=pm)
    assert code != 0 and "trains a new base model" in buf_err.getvalue() and "editors[0]" in buf_err.getvalue()
