"""FT-M meets the editor contract, trains on the target tokens only, refuses bad params
clearly, and edits the fact-world model with no params (its preset)."""

from __future__ import annotations

import pytest

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model


class TestFTMConformance(EditorConformance):
    editor_name = "ft-m"
    params = {"layers": [1], "lr": 1e-2, "steps": 5}


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


@pytest.fixture(scope="module")
def factworld():
    try:
        return kme.load("factworld")
    except kme.KmeError as e:  # pragma: no cover - kme-factworld not installed
        pytest.skip(f"fact-world model unavailable: {e}")


def test_defaults_are_easyedit_ft_m(pm):
    p = pm.editors.get("ft-m")().params
    assert (p.objective, p.norm_constraint, p.lr, p.steps, p.layers) == ("target_new", None, 5e-4, 25, [0])


def test_multi_token_target_is_learnt_token_by_token(pm):
    m = tiny_model("gpt2", pm)
    r = kme.EditRequest(case_id=0, prompt="{} was born in", subject="Alice Smith", target_new="New Amsterdam Bay")
    assert len(m.target_ids(r.text, r.target_new)) > 1
    before = m.score([r.text], [r.target_new])[0]
    h = m.edit("ft-m", [r], {"layers": [2], "lr": 1e-2, "steps": 30, "early_stop_loss": None})
    after = m.score([r.text], [r.target_new])[0]
    assert after.mean_logprob > before.mean_logprob + 0.3
    assert h.meta["final_loss"] < h.meta["first_loss"]


def test_a_batch_is_one_joint_optimisation_and_undo_is_exact(pm):
    m = tiny_model("qwen2", pm)
    w = m.parameter(m.weight_name(1)).detach().clone()
    h = m.edit("ft-m", default_requests(), {"layers": [1], "lr": 1e-2, "steps": 4, "batch_size": 2})
    assert h.meta["optimizer_steps"] <= 8 and len(h.requests) == 3
    m.undo()
    assert m.parameter(m.weight_name(1)).detach().equal(w)


@pytest.mark.parametrize("params, where", [
    ({"layers": [0, 0]}, "layers"), ({"lr": -1.0}, "lr"), ({"norm_constraint": 0}, "norm_constraint"),
    ({"batch_size": 0}, "batch_size"), ({"parts": []}, "parts"), ({"early_stop_loss": -1}, "early_stop_loss"),
])
def test_bad_params_are_config_errors_naming_the_field(pm, params, where):
    with pytest.raises(kme.ConfigError, match=where):
        pm.editors.get("ft-m")(params)


def test_layers_are_checked_against_the_model(pm):
    m = tiny_model("llama", pm)
    with pytest.raises(kme.ConfigError, match="layer -9 does not exist") as e:
        m.make_editor("ft-m", {"layers": [-9]}).check_model(m)
    assert e.value.where == "layers[0]"


def test_edits_the_fact_world_with_its_preset(factworld):
    m = factworld
    reqs = list(m.pm.datasets.get("factworld")({"limit": 3}).load())
    ed = m.make_editor("ft-m")
    assert ed.resolution is not None and ed.resolution.preset == "ft-m/factworld"
    took = 0
    for r in reqs:
        m.edit(ed, [r])
        new, old = m.score([r.text, r.text], [r.target_new, r.target_true])
        took += new.logprob > old.logprob
        m.undo()
    assert took == 3 and m.stack == []
