"""F-Learning meets the editor contract, forgets before it learns, handles requests without an
old fact as documented, refuses bad params clearly, and edits the fact-world model."""

from __future__ import annotations

import pytest

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model


class TestFLearningConformance(EditorConformance):
    editor_name = "f-learning"
    params = {"layers": [1], "lr": 1e-2, "steps": 4, "forget_steps": 3}


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


@pytest.fixture(scope="module")
def factworld():
    try:
        return kme.load("factworld")
    except kme.KmeError as e:  # pragma: no cover - kme-factworld not installed
        pytest.skip(f"fact-world model unavailable: {e}")


def _no_old(r: kme.EditRequest) -> kme.EditRequest:
    return r.model_copy(update={"target_true": None})


def test_forgetting_lowers_the_old_fact_before_learning(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    old_before = m.score([r.text], [r.target_true])[0].logprob
    # learning switched off (lr tiny, one pass): what is left is the forgetting step
    h = m.edit("f-learning", [r], {"layers": [1, 2], "lr": 1e-9, "steps": 1, "forget_lr": 1e-2,
                                   "forget_steps": 10, "forget_lambda": 1.0})
    assert h.meta["forgotten"] == 1 and h.meta["forget"]["optimizer_steps"] == 10
    assert m.score([r.text], [r.target_true])[0].logprob < old_before


def test_lambda_zero_is_plain_fine_tuning(pm):
    a, b = tiny_model("gpt2", pm), tiny_model("gpt2", pm)
    r = default_requests()[1]
    params = {"layers": [1], "lr": 1e-2, "steps": 5, "early_stop_loss": None}
    ha = a.edit("f-learning", [r], {**params, "forget_lambda": 0.0})
    hb = b.edit("f-learning", [_no_old(r)], params)  # nothing to forget: the learning stage alone
    assert "forget" not in ha.meta and hb.meta["forgotten"] == 0
    assert a.parameter(a.weight_name(1)).detach().equal(b.parameter(b.weight_name(1)).detach())


def test_requests_without_an_old_fact(pm):
    m = tiny_model("gpt2", pm)
    reqs = default_requests()[:2]
    h = m.edit("f-learning", [_no_old(reqs[0]), reqs[1]], {"layers": [1], "lr": 1e-2, "steps": 2})
    assert h.meta["forgotten"] == 1 and "forget" in h.meta
    m.undo()
    h = m.edit("f-learning", [_no_old(reqs[0])], {"layers": [1], "lr": 1e-2, "steps": 2})
    assert h.meta["forgotten"] == 0 and "forget" not in h.meta and h.deltas
    m.undo()
    blank = reqs[1].model_copy(update={"target_true": "  "})
    with pytest.raises(kme.DatasetRecordError, match="request 1 has no target_true") as e:
        m.edit("f-learning", [reqs[0], blank], {"layers": [1], "missing_old": "error"})
    assert e.value.where == "target_true" and m.stack == []


@pytest.mark.parametrize("params, where", [
    ({"forget_lambda": -0.5}, "forget_lambda"), ({"forget_lr": 0}, "forget_lr"),
    ({"forget_steps": 0}, "forget_steps"), ({"missing_old": "ignore"}, "missing_old"), ({"layers": []}, "layers"),
])
def test_bad_params_are_config_errors_naming_the_field(pm, params, where):
    with pytest.raises(kme.ConfigError, match=where):
        pm.editors.get("f-learning")(params)


def test_layers_are_checked_against_the_model(pm):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.ConfigError, match="layer 4 does not exist") as e:
        m.make_editor("f-learning", {"layers": [0, 4]}).check_model(m)
    assert e.value.where == "layers[1]"


def test_edits_the_fact_world_with_its_preset(factworld):
    m = factworld
    reqs = list(m.pm.datasets.get("factworld")({"limit": 2}).load())
    ed = m.make_editor("f-learning")
    assert ed.resolution is not None and ed.resolution.preset == "f-learning/factworld"
    for r in reqs:
        h = m.edit(ed, [r])
        assert h.meta["forgotten"] == 1
        new, old = m.score([r.text, r.text], [r.target_new, r.target_true])
        assert new.logprob > old.logprob
        m.undo()
    assert m.stack == []
