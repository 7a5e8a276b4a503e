"""`kme edit` and `kme patch`: the engineer's path from the command line."""

from __future__ import annotations

import json

import torch

from kme.models.loading import load_model


def test_edit_save_patch_then_apply_it(kme_cli, tmp_path, model_dir, pm):
    r = kme_cli("edit", model_dir, "--editor", "toy_shift", "--param", "scale=0.8", "--param", "layer=2",
                "--prompt", "The capital of {} is", "--subject", "France", "--target", "Rome",
                "--save-patch", str(tmp_path / "patch"), "--save-model", str(tmp_path / "edited"))
    assert r.code == 0, r
    assert "before:" in r.out and "after:" in r.out
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
