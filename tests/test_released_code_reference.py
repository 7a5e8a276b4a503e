"""ROME and MEMIT reproduce the weight changes of the code their authors released.

``tests/data/released-code-deltas/`` holds ΔW computed by a reference implementation of the
released code on the shipped fact-world checkpoint, with the requests, context prefixes,
covariance corpus and settings listed in its README. With kme's default conventions
(``kl_position: subject``, ROME ``insert_at: bare`` and flat key average, MEMIT keys averaged
by context kind) every ΔW must agree to a relative error of 1e-4; switching any of these
options must move ΔW far away from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import kme

DATA = Path(__file__).parent / "data" / "released-code-deltas"
ROME_W = "transformer.h.0.mlp.c_proj.weight"
MEMIT_W = [f"transformer.h.{layer}.mlp.c_proj.weight" for layer in (0, 1)]
TOL = 1e-4


def _requests(name: str) -> list[kme.EditRequest]:
    return [kme.EditRequest.model_validate(json.loads(line)["kme"]) for line in (DATA / name).read_text().splitlines()]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from safetensors.torch import load_file

    from kme_editlib import contexts

    torch.set_num_threads(1)
    pm = kme.build_plugin_manager()
    model = kme.load_model("factworld", pm)
    manifest_fp = "538e1c3cb9bd1a42e53fffd9c8eca6d3"
    if model.base_fingerprint != manifest_fp:
        pytest.fail(f"the shipped checkpoint changed (fingerprint {model.base_fingerprint}); the reference "
                    f"deltas were computed on {manifest_fp} and must be recomputed")
    # the reference used exactly these prefixes; use them whatever this machine would sample
    for spec, fname in (([(5, 10), (10, 10)], "prefixes_rome.json"), ([(10, 5)], "prefixes_memit.json")):
        key = (model.base_fingerprint, tuple(spec), 0, 5)
        contexts._CACHE[key] = json.loads((DATA / fname).read_text())
    common = dict(v_num_grad_steps=50, v_lr=1.0, v_weight_decay=0.5, clamp_norm_factor=4.0, kl_factor=0.0625,
                  early_stop_loss=0.05, stats_corpus=f"file:{DATA / 'corpus.jsonl'}", stats_samples=2000,
                  stats_max_length=128, stats_dir=str(tmp_path_factory.mktemp("refstats")), progress=False,
                  seed=0)
    rome = {**common, "layer": 0, "context_template_length_params": [[5, 10], [10, 10]]}
    memit = {**common, "layers": [0, 1], "mom2_update_weight": 468.75, "context_template_length_params": [[10, 5]]}
    yield {"model": model, "rome": rome, "memit": memit,
           "rome_ref": load_file(str(DATA / "rome_deltas.safetensors")),
           "memit_ref": load_file(str(DATA / "memit10_deltas.safetensors"))}
    for spec in ([(5, 10), (10, 10)], [(10, 5)]):
        contexts._CACHE.pop((model.base_fingerprint, tuple(spec), 0, 5), None)


def _rome_delta(setup, i: int, **override) -> torch.Tensor:
    model = setup["model"]
    req = _requests("rome_requests.jsonl")[i]
    h = model.edit("rome", [req], params={**setup["rome"], **override})
    try:
        return h.deltas[ROME_W].clone()
    finally:
        model.undo()


def _memit_deltas(setup, **override) -> list[torch.Tensor]:
    model = setup["model"]
    h = model.edit("memit", _requests("memit10_requests.jsonl"), params={**setup["memit"], **override})
    try:
        return [h.deltas[n].clone() for n in MEMIT_W]
    finally:
        model.undo()


def test_prefixes_match_what_the_reference_was_given():
    """On this checkpoint kme samples the same prefixes the reference used (seed 0)."""
    from kme_editlib import contexts

    pm = kme.build_plugin_manager()
    model = kme.load_model("factworld", pm)
    contexts._CACHE.clear()
    assert contexts.context_prefixes(model, [(10, 5)], seed=0) == json.loads((DATA / "prefixes_memit.json").read_text())


@pytest.mark.parametrize("i", range(5))
def test_rome_reproduces_released_code(setup, i):
    delta = _rome_delta(setup, i)
    ref = setup["rome_ref"][f"{i}|{ROME_W}"]
    assert delta.shape == ref.shape
    err = _rel(delta, ref)
    assert err <= TOL, f"ROME request {i}: ΔW relative error {err:.2e} > {TOL}"


def test_memit_reproduces_released_code(setup):
    deltas = _memit_deltas(setup)
    for name, delta in zip(MEMIT_W, deltas):
        err = _rel(delta, setup["memit_ref"][f"0|{name}"])
        assert err <= TOL, f"MEMIT {name}: ΔW relative error {err:.2e} > {TOL}"


@pytest.mark.parametrize("option", [{"kl_position": "last"}, {"insert_at": "average"},
                                    {"key_average": "by_context_kind"}])
def test_each_rome_option_changes_the_update(setup, option):
    ref = setup["rome_ref"][f"0|{ROME_W}"]
    err = _rel(_rome_delta(setup, 0, **option), ref)
    assert err > 1e-2, f"ROME with {option} gave ΔW within {err:.2e} of the released code's"


@pytest.mark.parametrize("option", [{"kl_position": "last"}, {"key_average": "flat"}])
def test_each_memit_option_changes_the_update(setup, option):
    deltas = _memit_deltas(setup, **option)
    errs = [_rel(d, setup["memit_ref"][f"0|{n}"]) for n, d in zip(MEMIT_W, deltas)]
    assert min(errs) > 1e-2, f"MEMIT with {option} gave ΔW within {errs} of the released code's"
