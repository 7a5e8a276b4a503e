"""The fine-tuning family's shared parts: losses agree with how kme scores, the loop leaves the
model untouched and respects its projection, RecAdam's optimiser is Adam plus the annealed pull."""

from __future__ import annotations

import math

import pytest
import torch

import kme
from kme.conformance import default_requests
from kme.testing import tiny_model

from kme_ftlib import (
    RecAdam, adam, anneal_lambda, encode_batch, fit, forward_logits, frozen, linf_project, loss_for,
    prompt_last_nll, quadratic_penalty, select_weights, target_tokens_nll,
)


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def _batch(m, reqs):
    return encode_batch(m, [r.text for r in reqs], [r.target_new for r in reqs])


def test_target_loss_is_what_score_measures(pm):
    m = tiny_model("gpt2", pm)
    reqs = default_requests()
    b = _batch(m, reqs)
    with torch.no_grad():
        logits = forward_logits(m, {}, b)
    scores = m.score([r.text for r in reqs], [r.target_new for r in reqs])
    want = -sum(s.mean_logprob for s in scores) / len(scores)
    assert float(target_tokens_nll(logits, b)) == pytest.approx(want, rel=1e-5)
    # the last prompt token's distribution, scored against every target token
    lp = torch.log_softmax(logits[0, b.prompt_lens[0] - 1], -1)
    assert float(prompt_last_nll(logits, b.rows([0]))) == pytest.approx(float(-lp[b.targets[0]].mean()), rel=1e-6)


def test_one_token_targets_make_the_two_objectives_equal():
    logits = torch.randn(2, 5, 11)
    from kme_ftlib.losses import EditBatch

    b = EditBatch(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long), [3, 4], [[7], [2]])
    assert torch.allclose(prompt_last_nll(logits, b), target_tokens_nll(logits, b))
    multi = EditBatch(b.ids, b.mask, [2, 2], [[7, 3], [2, 5]])
    assert not torch.allclose(prompt_last_nll(logits, multi), target_tokens_nll(logits, multi))


def test_unknown_objective_is_a_config_error():
    with pytest.raises(kme.ConfigError, match="unknown objective"):
        loss_for("last_token")


def test_select_weights_per_part_and_architecture(pm):
    g = tiny_model("gpt2", pm)
    assert select_weights(g, [1], ["mlp_out"], True) == [g.weight_name(1), g.weight_name(1)[:-6] + "bias"]
    assert select_weights(g, [1], ["mlp_out"], False) == [g.weight_name(1)]
    block = select_weights(g, [-1], ["block"], True)
    last = g.num_layers - 1
    assert block and all(n.startswith(f"{g.layout.blocks}.{last}.") for n in block)
    with pytest.raises(kme.ConfigError, match="no 'mlp_gate' module") as e:
        select_weights(g, [0], ["mlp_gate"], True)
    assert e.value.where == "parts"
    llama = tiny_model("llama", pm)
    assert select_weights(llama, [0], ["mlp_gate"], True) == [llama.weight_name(0, "mlp_gate")]
    with pytest.raises(kme.KmeError, match="layer 9 does not exist"):
        select_weights(g, [9], ["mlp_out"], True)


def test_fit_leaves_the_model_alone_and_respects_the_projection(pm):
    torch.manual_seed(0)
    m = tiny_model("gpt2", pm)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in m.model.named_parameters()}
    names = select_weights(m, [1], ["mlp_out"], True)
    start = {n: m.parameter(n).detach() for n in names}
    originals = {n: t.clone() for n, t in start.items()}
    b = _batch(m, default_requests())
    res = fit(m, start, b, loss_for("target_new"), steps=5, batch_size=2, make_optimizer=adam(1e-2),
              project=lambda v: linf_project(v, originals, 3e-3))
    assert res.steps == 10 and len(res.losses) == 5  # 2 chunks per pass
    assert res.losses[-1] < res.losses[0]
    for n in names:
        d = (res.values[n] - originals[n]).abs().max()
        assert 0 < float(d) <= 3e-3 + 1e-7
    assert all(torch.equal(before[k], v) for k, v in m.model.state_dict().items())
    assert {n: p.requires_grad for n, p in m.model.named_parameters()} == flags
    assert all(p.grad is None for p in m.model.parameters())


def test_fit_stops_early_below_the_threshold(pm):
    m = tiny_model("gpt2", pm)
    names = select_weights(m, [0], ["mlp_out"], True)
    start = {n: m.parameter(n).detach() for n in names}
    res = fit(m, start, _batch(m, default_requests()[:1]), loss_for("target_new"), steps=5, batch_size=8,
              make_optimizer=adam(1e-2), early_stop_loss=1e9)
    assert res.stopped_early and res.steps == 0 and len(res.losses) == 1
    assert all(torch.equal(res.values[n], start[n]) for n in names)


def test_a_nan_loss_fails_the_edit(pm):
    m = tiny_model("gpt2", pm)
    names = select_weights(m, [0], ["mlp_out"], False)
    start = {n: torch.full_like(m.parameter(n), float("nan")) for n in names}
    with pytest.raises(kme.EditFailedError, match="loss became nan"):
        fit(m, start, _batch(m, default_requests()[:1]), loss_for("target_new"), steps=2, batch_size=8,
            make_optimizer=adam(1e-2))


def test_frozen_restores_flags_and_mode(pm):
    m = tiny_model("gpt2", pm)
    m.model.train()
    with frozen(m):
        assert not m.model.training and not any(p.requires_grad for p in m.model.parameters())
    assert m.model.training and all(p.requires_grad for p in m.model.parameters())
    m.model.eval()


def test_anneal_functions():
    assert anneal_lambda("sigmoid", 10, 0.5, 10) == 0.5
    assert anneal_lambda("sigmoid", 1, 0.5, 1000) == pytest.approx(1 / (1 + math.exp(0.5 * 999)))
    assert anneal_lambda("sigmoid", 1, 10.0, 1e6) == 0.0  # no overflow
    assert anneal_lambda("sigmoid", 100, 0.5, 10) == pytest.approx(1.0)
    assert anneal_lambda("linear", 5, 0, 10) == 0.5 and anneal_lambda("linear", 50, 0, 10) == 1.0
    assert anneal_lambda("constant", 1, 0, 0) == 1.0
    with pytest.raises(ValueError):
        anneal_lambda("cosine", 1, 0, 0)


def _quadratic_run(opt_factory, steps: int = 6) -> torch.Tensor:
    torch.manual_seed(0)
    target = torch.randn(4, 3)
    x = torch.zeros(4, 3, requires_grad=True)
    opt = opt_factory([x])
    for _ in range(steps):
        opt.zero_grad()
        ((x - target) ** 2).sum().backward()
        opt.step()
    return x.detach()


# RecAdam's released optimiser folds Adam's bias correction into the step size (ε is added to
# the uncorrected √v), so it equals torch's Adam only up to where ε sits: compare with ε ≈ 0
def test_recadam_without_penalty_is_adam():
    a = _quadratic_run(lambda ps: torch.optim.Adam(ps, lr=0.1, eps=1e-12))
    r = _quadratic_run(lambda ps: RecAdam(ps, [torch.zeros(4, 3)], lr=0.1, gamma=5.0, lam=lambda t: 1.0, eps=1e-12))
    assert torch.allclose(a, r, atol=1e-6)


def test_recadam_pull_returns_to_the_anchor():
    anchor = torch.full((4, 3), 0.25)
    # λ = 0: no task step, and lr·γ = 1 puts the weights exactly on the anchor
    r = _quadratic_run(lambda ps: RecAdam(ps, [anchor], lr=0.1, gamma=10.0, lam=lambda t: 0.0), steps=1)
    assert torch.allclose(r, anchor)
    # halfway: the task step is halved, then the distance to the anchor shrinks by lr·(1-λ)·γ
    half = _quadratic_run(lambda ps: RecAdam(ps, [anchor], lr=0.1, gamma=4.0, lam=lambda t: 0.5, eps=1e-12),
                          steps=1)
    adam_step = _quadratic_run(lambda ps: torch.optim.Adam(ps, lr=0.1, eps=1e-12), steps=1)
    expect = 0.5 * adam_step
    expect = expect - 0.1 * 0.5 * 4.0 * (expect - anchor)
    assert torch.allclose(half, expect, atol=1e-6)


def test_quadratic_penalty():
    v = {"a": torch.ones(2, 2), "b": torch.zeros(3)}
    anchors = {"a": torch.zeros(2, 2), "b": torch.ones(3)}
    assert float(quadratic_penalty(v, anchors)) == pytest.approx(0.5 * (4 + 3))
