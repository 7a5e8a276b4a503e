"""RecAdam meets the editor contract, its penalty holds the weights nearer to where they
started, bad params are clear errors, and it edits the fact-world model with its preset."""

from __future__ import annotations

import pytest

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model


class TestRecAdamConformance(EditorConformance):
    editor_name = "recadam"
    params = {"layers": [1], "lr": 1e-2, "steps": 6, "gamma": 50.0}


class TestRecAdamPaperReadingConformance(EditorConformance):
    editor_name = "recadam"
    params = {"layers": [1], "lr": 1e-2, "steps": 6, "gamma": 50.0, "penalty": "loss"}
    families = ("gpt2",)


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


@pytest.fixture(scope="module")
def factworld():
    try:
        return kme.load("factworld")
    except kme.KmeError as e:  # pragma: no cover - kme-factworld not installed
        pytest.skip(f"fact-world model unavailable: {e}")


@pytest.mark.parametrize("penalty", ["decoupled", "loss"])
def test_a_larger_gamma_stays_closer_to_the_start(pm, penalty):
    dist = []
    for gamma in (1.0, 190.0):
        m = tiny_model("gpt2", pm)
        h = m.edit("recadam", default_requests()[:2], {"layers": [1], "lr": 1e-2, "steps": 20, "gamma": gamma,
                                                        "k": 0.2, "penalty": penalty})
        dist.append(h.meta["distance_to_start"])
        assert h.meta["t0"] == 10 and h.meta["lambda_first"] < 0.5 < h.meta["lambda_last"]
    assert dist[1] < dist[0]


def test_constant_anneal_is_plain_adam(pm):
    m = tiny_model("gpt2", pm)
    h = m.edit("recadam", default_requests()[:1], {"layers": [1], "lr": 1e-2, "steps": 4, "anneal": "constant"})
    assert h.meta["lambda_first"] == h.meta["lambda_last"] == 1.0


@pytest.mark.parametrize("params, where, text", [
    ({"lr": 1e-2, "gamma": 500.0}, "gamma", "diverges"),
    ({"anneal": "linear", "t0": 0}, "t0", "t0 > 0"),
    ({"anneal": "cosine"}, "anneal", ""),
    ({"k": 0}, "k", ""),
    ({"layers": []}, "layers", ""),
])
def test_bad_params_are_config_errors_naming_the_field(pm, params, where, text):
    with pytest.raises(kme.ConfigError, match=where) as e:
        pm.editors.get("recadam")(params)
    assert text in str(e.value)


def test_code_defaults_are_the_released_ones_and_valid(pm):
    p = pm.editors.get("recadam")().params
    assert (p.gamma, p.anneal, p.k, p.eps, p.penalty) == (5000.0, "sigmoid", 0.5, 1e-6, "decoupled")
    assert p.lr * p.gamma < 2


def test_the_paper_reading_has_no_step_bound(pm):
    assert pm.editors.get("recadam")({"lr": 1e-2, "gamma": 500.0, "penalty": "loss"}).params.gamma == 500.0


def test_layers_are_checked_against_the_model(pm):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.ConfigError, match="layer 5 does not exist") as e:
        m.make_editor("recadam", {"layers": [5]}).check_model(m)
    assert e.value.where == "layers[0]"


def test_edits_the_fact_world_with_its_preset(factworld):
    m = factworld
    reqs = list(m.pm.datasets.get("factworld")({"limit": 2}).load())
    ed = m.make_editor("recadam")
    assert ed.resolution is not None and ed.resolution.preset == "recadam/factworld"
    for r in reqs:
        m.edit(ed, [r])
        new, old = m.score([r.text, r.text], [r.target_new, r.target_true])
        assert new.logprob > old.logprob
        m.undo()
    assert m.stack == []
