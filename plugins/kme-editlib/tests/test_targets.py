import pytest
import torch

from kme import EditRequest
from kme.conformance import default_requests
from kme.errors import KmeError
from kme.testing import tiny_model
from kme_editlib.keys import average_keys, point_values
from kme_editlib.targets import TargetConfig, optimise_targets
from kme_editlib.tokens import lookup_index, target_ids_of

CFG = TargetConfig(steps=6, weight_decay=0.5, clamp_norm_factor=50.0, kl_factor=0.0625, fact_token="last")


def test_batched_optimisation_gives_each_request_its_own_vector():
    m = tiny_model("gpt2")
    reqs = default_requests()
    prefixes = ["", "Because of this. "]
    points = [(1, "block")]
    together = optimise_targets(m, reqs, points, prefixes, CFG)
    for i, r in enumerate(reqs):
        alone = optimise_targets(m, [r], points, prefixes, CFG)
        assert torch.allclose(together.delta[points[0]][i], alone.delta[points[0]][0], atol=1e-4)
        assert together.init[points[0]][i].allclose(alone.init[points[0]][0], atol=1e-5)
        assert abs(together.loss[i] - alone.loss[0]) < 1e-3
    assert all(s == CFG.steps for s in together.steps)


def test_optimisation_lowers_the_loss_clamps_the_norm_and_stops_early():
    m = tiny_model("llama")
    reqs = default_requests()[:2]
    pt = (0, "mlp_out")
    cfg = TargetConfig(steps=15, weight_decay=0.0, clamp_norm_factor=200.0, kl_factor=0.0, fact_token="last")
    res = optimise_targets(m, reqs, [pt], [""], cfg)
    start = optimise_targets(m, reqs, [pt], [""], TargetConfig(steps=1, kl_factor=0.0, fact_token="last"))
    assert all(a < b for a, b in zip(res.nll, start.nll))
    tight = TargetConfig(steps=5, weight_decay=0.0, clamp_norm_factor=0.5, kl_factor=0.0, fact_token="last")
    clamped = optimise_targets(m, reqs, [pt], [""], tight)
    ratio = clamped.delta[pt].norm(dim=-1) / clamped.init[pt].norm(dim=-1)
    assert bool((ratio <= 0.5 + 1e-4).all())
    # a request whose loss is already below the threshold stops at its first step
    easy = TargetConfig(steps=10, early_stop_loss=1e9, kl_factor=0.0, fact_token="last")
    stopped = optimise_targets(m, reqs, [pt], [""], easy)
    assert stopped.steps == [1, 1] and float(stopped.delta[pt].abs().max()) == 0.0


def test_injected_target_is_read_back_at_the_fact_token():
    m = tiny_model("gpt_neox")
    reqs = default_requests()[:2]
    pts = [(2, "mlp_out"), (2, "block")]
    res = optimise_targets(m, reqs, pts, [""], TargetConfig(steps=1, kl_factor=0.0))
    vals = point_values(m, reqs, pts)
    for pt in pts:
        assert torch.allclose(res.init[pt], vals[pt], atol=1e-5)
    keys = average_keys(m, reqs, [2], ["", "I think. "])
    assert keys[2].shape == (2, 128)


def test_subject_positions_and_bad_inputs():
    m = tiny_model("gpt2")
    text = "The capital of France is"
    i = lookup_index(m, text, "France")
    ids = m.tokenizer(text)["input_ids"]
    assert m.tokenizer.decode(ids[: i + 1]).endswith("France")
    assert lookup_index(m, text, "France", "last") == len(ids) - 1
    with pytest.raises(KmeError, match="does not occur"):
        lookup_index(m, text, "Germany")
    with pytest.raises(KmeError, match="empty target_new"):
        target_ids_of(m, text, "  ")
    bad = EditRequest.model_construct(case_id=9, prompt="{} speaks", subject="Bob", target_new="", meta={},
                                      paraphrase_prompts=[], neighborhood=[], portability=[])
    with pytest.raises(KmeError, match="empty target_new"):
        optimise_targets(m, [bad], [(0, "mlp_out")], [""], CFG)
    with pytest.raises(KmeError, match="layer 9 does not exist"):
        optimise_targets(m, default_requests()[:1], [(9, "mlp_out")], [""], CFG)


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_replaying_lower_blocks_changes_nothing(family):
    m = tiny_model(family)
    reqs = default_requests()
    for pts in ([(2, "block")], [(2, "mlp_out")], [(1, "attn_out"), (1, "mlp_out")]):
        fast = optimise_targets(m, reqs, pts, ["", "I think so. "], TargetConfig(steps=4))
        slow = optimise_targets(m, reqs, pts, ["", "I think so. "], TargetConfig(steps=4, replay_lower_layers=False))
        for p in pts:
            assert torch.allclose(fast.delta[p], slow.delta[p], atol=1e-6)
    assert all(not hasattr(module, "forward") or "forward" not in vars(module) for module in m.model.modules())
