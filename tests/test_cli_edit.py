"""`kme edit` and `kme patch`: the engineer's path from the command line."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import kme
from kme import Capabilities, Editor, Params
from kme.models.loading import load_model


class PushParams(Params):
    strength: float = 100.0


class PushEditor(Editor):
    """Adds ``strength`` times the target's first-token embedding to the last layer's MLP output
    bias: the target becomes the model's top-1 answer everywhere (a sure edit, for tests)."""

    name = "toy_push"
    description = "push the target's embedding into the residual stream; for CLI tests"
    Params = PushParams
    capabilities = Capabilities(kind="parametric")

    def apply(self, model, requests, location=None):
        h = model.new_handle(self, requests)
        bias = model.weight_name(model.num_layers - 1, "mlp_out").rsplit(".", 1)[0] + ".bias"
        emb = model.model.get_output_embeddings().weight
        for r in requests:
            tid = model.target_ids(r.text, r.target_new)[0]
            h.add_delta(bias, self.params.strength * emb[tid].detach() / emb[tid].norm())
        return h


class PushPlugin:
    @staticmethod
    @kme.hookimpl
    def kme_register_editors(register) -> None:
        register(PushEditor)


@pytest.fixture
def kme_cli_push(kme_cli, monkeypatch):
    """``kme_cli`` with the sure-edit editor ``toy_push`` installed too."""
    from kme import cli

    prev = cli.build_plugin_manager
    monkeypatch.setattr(cli, "build_plugin_manager",
                        lambda extra=None, **kw: prev([PushPlugin] + list(extra or []), **kw))
    return kme_cli


EDIT = ("--prompt", "The capital of {} is", "--subject", "France", "--target", "Rome")


def test_edit_save_patch_then_apply_it(kme_cli, tmp_path, model_dir, pm):
    # toy_shift adds random noise: the edit does not take, and --keep-failed writes it anyway
    r = kme_cli("edit", model_dir, "--editor", "toy_shift", "--param", "scale=0.8", "--param", "layer=2",
                "--prompt", "The capital of {} is", "--subject", "France", "--target", "Rome", "--keep-failed",
                "--save-patch", str(tmp_path / "patch"), "--save-model", str(tmp_path / "edited"))
    assert r.code == 0, r
    assert "before:" in r.out and "after:" in r.out
    assert "did not take" in r.err and "--keep-failed" in r.err
    manifest = json.loads((tmp_path / "patch" / "manifest.json").read_text())
    assert manifest["edits"][0]["params"] == {"scale": 0.8, "layer": 2, "make_nan": False}
    info = kme_cli("patch", "info", str(tmp_path / "patch"))
    assert "toy_shift: 1 request(s), 1 weight delta(s)" in info.out
    r = kme_cli("patch", "apply", model_dir, str(tmp_path / "patch"), "--save-model", str(tmp_path / "applied"))
    assert r.code == 0, r
    a = load_model(str(tmp_path / "edited"), pm).model.state_dict()
    b = load_model(str(tmp_path / "applied"), pm).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the patch is refused on the edited model (a different base)
    r = kme_cli("patch", "apply", str(tmp_path / "edited"), str(tmp_path / "patch"), "--save-model",
                str(tmp_path / "twice"))
    assert r.code == 2 and "was made for base model" in r.err


def test_edit_errors(kme_cli, model_dir):
    r = kme_cli("edit", model_dir, "--editor", "toy_shfit", "--prompt", "{} is", "--subject", "X", "--target", "Y")
    assert r.code == 2 and "did you mean 'toy_shift'" in r.err
    r = kme_cli("edit", model_dir, "--editor", "toy_shift", "--prompt", "The capital is", "--subject", "France",
                "--target", "Rome")
    assert r.code == 2 and "subject 'France' does not occur in prompt" in r.err
    r = kme_cli("edit", model_dir, "--editor", "toy_shift", "--prompt", "{} is", "--subject", "X", "--target", " ")
    assert r.code == 2 and "target_new must be a non-empty string" in r.err
    r = kme_cli("edit", model_dir, "--editor", "toy_shift", "--param", "layer=9", "--prompt", "{} is",
                "--subject", "X", "--target", "Y")
    assert r.code == 2 and "layer 9 does not exist" in r.err
    r = kme_cli("edit", model_dir, "--editor", "toy_shift", "--param", "layer", "--prompt", "{} is",
                "--subject", "X", "--target", "Y")
    assert r.code == 2 and "KEY=VALUE" in r.err


def test_edit_that_takes_reports_probabilities_and_writes(kme_cli_push, tmp_path, model_dir):
    r = kme_cli_push("edit", model_dir, "--editor", "toy_push", *EDIT, "--save-patch", str(tmp_path / "patch"),
                     "--save-model", str(tmp_path / "edited"))
    assert r.code == 0, r
    lines = r.out.splitlines()
    before = next(x for x in lines if x.strip().startswith("before: P(target)"))
    after = next(x for x in lines if x.strip().startswith("after:  P(target)"))
    assert "(not top-1)" in before and "(top-1)" in after
    p_before = float(before.split("=")[1].split()[0])
    p_after = float(after.split("=")[1].split()[0])
    assert p_after > p_before
    assert "the edit took" in r.out
    assert (tmp_path / "patch" / "manifest.json").exists() and (tmp_path / "edited" / "config.json").exists()


def test_edit_that_does_not_take_exits_1_and_writes_nothing(kme_cli, tmp_path, model_dir):
    r = kme_cli("edit", model_dir, "--editor", "toy_shift", "--param", "scale=0.8", "--param", "layer=2", *EDIT,
                "--save-patch", str(tmp_path / "patch"), "--save-model", str(tmp_path / "edited"))
    assert r.code == 1, r
    assert "P(target)" in r.out and "(not top-1)" in r.out
    assert "the edit did not take" in r.err and "nothing was written" in r.err and "--keep-failed" in r.err
    assert "Traceback" not in r.err
    assert not (tmp_path / "patch").exists() and not (tmp_path / "edited").exists()
    # nothing to write: still exit 1, the user learns the edit did not take
    r = kme_cli("edit", model_dir, "--editor", "toy_shift", "--param", "scale=0.8", "--param", "layer=2", *EDIT)
    assert r.code == 1 and "did not take" in r.err


def test_edit_quiet_silences_transformers_and_restores_it(kme_cli_push, model_dir, monkeypatch):
    import warnings

    from transformers.utils import logging as tf_logging

    from kme.models import loading

    seen = {}
    real = loading._load_model

    def spy(spec, pm):
        seen["verbosity"] = tf_logging.get_verbosity()
        seen["bars"] = tf_logging.is_progress_bar_enabled()
        return real(spec, pm)

    monkeypatch.setattr(loading, "_load_model", spy)
    tf_logging.set_verbosity_warning()
    with warnings.catch_warnings():  # huggingface_hub warns that HF_HUB_DISABLE_PROGRESS_BARS wins
        warnings.simplefilter("ignore")
        tf_logging.enable_progress_bar()
    try:
        r = kme_cli_push("edit", model_dir, "-q", "--editor", "toy_push", *EDIT)
        assert r.code == 0, r
        assert seen == {"verbosity": logging.ERROR, "bars": False}
        assert "Loading weights" not in r.err
        assert tf_logging.get_verbosity() == logging.WARNING and tf_logging.is_progress_bar_enabled()
        r = kme_cli_push("edit", model_dir, "--no-progress", "--editor", "toy_push", *EDIT)
        assert r.code == 0 and seen == {"verbosity": logging.WARNING, "bars": False}
        r = kme_cli_push("edit", model_dir, "-q", "-v", "--editor", "toy_push", *EDIT)
        assert r.code == 2 and "exclude each other" in r.err
    finally:
        tf_logging.set_verbosity_error()
