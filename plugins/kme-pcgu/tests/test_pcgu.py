"""PCGU meets the editor contract, updates only the k most-different partitions, lowers the
advantaged completion's lead, refuses bad params and non-contrastive requests clearly, and
edits the fact-world model with its preset."""

from __future__ import annotations

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_pcgu.partition import count_partitions, select_top_k, similarities, unit_axes


class TestPCGUConformance(EditorConformance):
    editor_name = "pcgu"
    params = {"k": 50, "lr": 1e-2, "steps": 2}


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


@pytest.fixture(scope="module")
def factworld():
    try:
        return kme.load("factworld")
    except kme.KmeError as e:  # pragma: no cover - kme-factworld not installed
        pytest.skip(f"fact-world model unavailable: {e}")


def _gap(m, reqs):
    s = m.score([r.text for r in reqs] * 2, [r.target_true for r in reqs] + [r.target_new for r in reqs])
    n = len(reqs)
    return sum(s[i].mean_logprob - s[n + i].mean_logprob for i in range(n)) / n


def _changed_units(delta: torch.Tensor, axis: int | None) -> int:
    if axis is None:
        return int(bool(delta.abs().max() > 0))
    return int((delta.abs().amax(dim=axis) > 0).sum())


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_only_k_partitions_move_and_the_gap_shrinks(pm, family):
    m = tiny_model(family, pm)
    reqs = default_requests()
    before = _gap(m, reqs)
    h = m.edit("pcgu", reqs, {"k": 30, "lr": 5e-2, "steps": 1, "score": "logprob", "direction": "both"})
    assert _gap(m, reqs) < before
    axes = unit_axes(m, h.meta["trained"], "input")
    # one step: at most k partitions (units or whole 1-D parameters) changed
    assert sum(_changed_units(d, axes[n]) for n, d in h.deltas.items()) <= 30
    assert h.meta["k"] == 30 and h.meta["optimizer_steps"] == 1 and sum(h.meta["selected"].values()) == 30


def test_input_aggregation_follows_the_weight_layout(pm):
    gpt2, llama = tiny_model("gpt2", pm), tiny_model("llama", pm)
    w = gpt2.weight_name(0, "mlp_out")  # Conv1D, stored [in, out]
    assert unit_axes(gpt2, [w], "input")[w] == 0 and unit_axes(gpt2, [w], "output")[w] == 1
    v = llama.weight_name(0, "mlp_out")  # nn.Linear, stored [out, in]
    assert unit_axes(llama, [v], "input")[v] == 1
    shapes = {w: gpt2.parameter(w).shape}
    assert count_partitions(shapes, {w: 0}) == gpt2.parameter(w).shape[1]


def test_ranking_picks_the_least_similar_and_never_dead_partitions():
    g1 = {"a": torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), "b": torch.tensor([1.0, 2.0])}
    g2 = {"a": torch.tensor([[-1.0, 0.0], [1.0, 1.0], [1.0, 1.0]]), "b": torch.tensor([1.0, 2.0])}
    sims = similarities(g1, g2, {"a": 1, "b": None})
    assert sims["a"].tolist()[:2] == pytest.approx([-1.0, 1.0]) and sims["a"][2] == float("inf")
    masks = select_top_k(sims, 2)
    assert masks["a"].tolist() == [True, True, False] and masks["b"].tolist() == [False]


def test_direction_advantaged_leaves_unselected_weights_bit_equal_and_undo_is_exact(pm):
    m = tiny_model("gpt2", pm)
    before = {n: p.detach().clone() for n, p in m.model.named_parameters()}
    h = m.edit("pcgu", default_requests()[:2], {"k": 5, "lr": 1e-2, "steps": 1, "layers": [1], "parts": ["mlp_out"]})
    assert set(h.meta["trained"]) == {m.weight_name(1), m.weight_name(1)[: -len("weight")] + "bias"}
    for n, p in m.model.named_parameters():
        if n not in h.meta["trained"]:
            assert torch.equal(p, before[n])
    m.undo()
    assert all(torch.equal(p, before[n]) for n, p in m.model.named_parameters())


def test_stop_gap_skips_pairs_already_at_parity(pm):
    m = tiny_model("gpt2", pm)
    h = m.edit("pcgu", default_requests(), {"stop_gap": 100.0, "lr": 1.0})
    assert h.meta["optimizer_steps"] == 0 and h.meta["stopped_early"] and h.meta["max_abs_change"] == 0


@pytest.mark.parametrize("params, where", [
    ({"k": 0}, "k"),
    ({"lr": 0}, "lr"),
    ({"lr": float("inf")}, "lr"),
    ({"steps": 0}, "steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"layers": []}, "layers"),
    ({"layers": [1, 1]}, "layers"),
    ({"parts": ["block", "mlp_out"]}, "parts"),
    ({"aggregation": "rows"}, "aggregation"),
    ({"direction": "up"}, "direction"),
    ({"score": "prob"}, "score"),
    ({"stop_gap": float("nan")}, "stop_gap"),
])
def test_bad_params_are_config_errors_naming_the_field(pm, params, where):
    with pytest.raises(kme.ConfigError, match=where):
        pm.editors.get("pcgu")(params)


def test_layers_and_parts_are_checked_against_the_model(pm):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.ConfigError, match="layer 9 does not exist"):
        m.make_editor("pcgu", {"layers": [9]}).check_model(m)
    with pytest.raises(kme.ConfigError, match="no 'mlp_gate' module") as e:
        m.make_editor("pcgu", {"parts": ["mlp_gate"]}).check_model(m)
    assert e.value.where == "parts"


def test_requests_without_a_contrast_are_refused_and_nothing_changes(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    with pytest.raises(kme.EditFailedError, match="no target_true") as e:
        m.edit("pcgu", [r.model_copy(update={"target_true": None})], {"k": 5})
    assert str(r.case_id) in (e.value.where or "")
    with pytest.raises(kme.EditFailedError, match="same advantaged and disadvantaged"):
        m.edit("pcgu", [r.model_copy(update={"target_true": r.target_new})], {"k": 5})
    assert m.stack == []


def test_edits_the_fact_world_with_its_preset(factworld):
    m = factworld
    reqs = list(m.pm.datasets.get("factworld-contrastive")({"relations": ["profession"], "limit": 4}).load())
    ed = m.make_editor("pcgu")
    assert ed.resolution is not None and ed.resolution.preset == "pcgu/factworld"
    before = _gap(m, reqs)
    m.edit(ed, reqs)
    assert _gap(m, reqs) < before - 1.0
    assert ed.params.stop_gap == 0.0
    m.undo()
    assert m.stack == [] and _gap(m, reqs) == pytest.approx(before, abs=1e-6)
