"""kme_hyperlib.capture / batches / trainer on tiny models: factors reproduce the true
gradient, the low-rank delta reproduces the dense weight change, batches label only target
tokens, and the training loop resumes to the same result."""

from __future__ import annotations

import pytest
import torch

import kme
from kme.conformance import default_requests, default_train_requests
from kme.testing import tiny_model

from kme_hyperlib.batches import EditSampler, LMBatch, edit_pairs, kl_locality, lm_batch, masked_nll
from kme_hyperlib.capture import (LowRankDelta, capture_factors, edit_targets, frozen_parameters, module_of,
                                  weight_delta)
from kme_hyperlib.trainer import TrainLoop


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def _requests() -> list[kme.EditRequest]:
    return [r.model_copy(update={"paraphrase_prompts": [f"Indeed, {r.text}"]}) for r in default_requests()]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_factors_give_the_true_gradient_without_parameter_grads(pm, family):
    m = tiny_model(family, pm)
    net = m.model
    targets = edit_targets(m, [1, 3])
    assert {t.part for t in targets} >= {"mlp_in", "mlp_out"}
    batch = lm_batch(m, [p for r in _requests() for p in edit_pairs(r, "both")])
    modules = {t.name: module_of(m, t.module_name) for t in targets}
    with frozen_parameters(net):
        factors, loss = capture_factors(net, modules, lambda: masked_nll(batch.forward(net), batch),
                                        token_mask=batch.attention_mask)
    assert all(p.grad is None for p in net.parameters())
    # reference: autograd's dense gradient
    ref = torch.autograd.grad(masked_nll(batch.forward(net), batch), [m.parameter(t.name) for t in targets])
    for t, g in zip(targets, ref):
        f = factors[t.name]
        assert f.u.shape[1] == t.d_in and f.delta.shape[1] == t.d_out
        assert torch.allclose(weight_delta(f.u, f.delta, t.conv1d), g, atol=1e-6, rtol=1e-4)
    assert float(loss) > 0


def test_low_rank_delta_matches_the_dense_change(pm):
    m = tiny_model("gpt2", pm)
    net = m.model
    t = edit_targets(m, [2])[1]
    mod = module_of(m, t.module_name)
    batch = lm_batch(m, [(r.text, r.target_new) for r in _requests()], groups=[0, 1, 1])
    torch.manual_seed(0)
    u = torch.randn(2, 3, t.d_in)
    d = torch.randn(2, 3, t.d_out)
    scale = torch.tensor(0.01)
    with torch.no_grad():
        with LowRankDelta(net, {t.name: mod}) as ld:
            ld.set(t.name, u, d, scale)
            ld.groups(batch.group)
            fast = batch.forward(net)
        for g in range(2):
            w = m.parameter(t.name)
            keep = w.detach().clone()
            w.add_(scale * weight_delta(u[g], d[g], t.conv1d))
            dense = batch.forward(net)
            w.copy_(keep)
            rows = batch.group == g
            assert torch.allclose(fast[rows], dense[rows], atol=1e-4)


def test_batches_label_target_tokens_and_losses_are_per_group(pm):
    m = tiny_model("gpt2", pm)
    reqs = _requests()
    b = lm_batch(m, [(r.text, r.target_new) for r in reqs], groups=[0, 1, 2])
    for i, r in enumerate(reqs):
        labelled = b.labels[i][b.labels[i] != -100].tolist()
        assert labelled == m.target_ids(r.text, r.target_new)
    with torch.no_grad():
        logits = b.forward(m.model)
    per = masked_nll(logits, b, n_groups=3)
    assert per.shape == (3,)
    scores = m.score([r.text for r in reqs], [r.target_new for r in reqs])
    for i, s in enumerate(scores):
        assert abs(float(per[i]) + s.mean_logprob) < 1e-4
    assert float(kl_locality(logits, logits, b)) == pytest.approx(0.0, abs=1e-6)
    both = LMBatch.cat([b, lm_batch(m, [("x", "y")])], m.tokenizer.pad_token_id)
    assert len(both) == 4


def test_sampler_is_seeded_resumable_and_keeps_locality_unrelated(pm):
    m = tiny_model("gpt2", pm)
    reqs = _requests()
    a = EditSampler(reqs, seed=3, loc_per_edit=2)
    first = a.sample(m, 2)
    state = a.state_dict()
    nxt = a.sample(m, 2)
    b = EditSampler(reqs, seed=3, loc_per_edit=2)
    b.sample(m, 2)
    b.load_state_dict(state)
    again = b.sample(m, 2)
    assert [r.case_id for r in nxt.edits] == [r.case_id for r in again.edits]
    assert nxt.loc_pairs == again.loc_pairs
    for (prompt, _), g in zip(first.loc_pairs, first.loc.group.tolist()):
        assert first.edits[g].subject not in prompt
    with pytest.raises(kme.ConfigError, match="at least 2"):
        EditSampler(reqs[:1])


def test_neighbour_locality_shares_the_relation_and_the_old_object(pm):
    m = tiny_model("gpt2", pm)
    reqs = default_train_requests()
    by_text = {r.text: r for r in reqs}
    st = EditSampler(reqs, seed=0, loc_per_edit=3, locality="neighbours").sample(m, 4)
    for (prompt, target), g in zip(st.loc_pairs, st.loc.group.tolist()):
        edit, other = st.edits[g], by_text[prompt]
        assert other.subject != edit.subject
        assert other.relation == edit.relation and target == edit.target_true
    mixed = EditSampler(reqs, seed=0, loc_per_edit=4, locality="mixed").sample(m, 1)
    assert len(mixed.loc_pairs) == 4


def test_train_loop_resumes_to_the_same_weights(tmp_path):
    def run(out, stop_after=None):
        torch.manual_seed(0)
        w = torch.nn.Linear(3, 1)
        opt = torch.optim.Adam(w.parameters(), lr=0.1)
        x = torch.randn(16, 3)

        def step(i):
            loss = ((w(x) - torch.randn(16, 1)) ** 2).mean()  # draws from the (restored) torch RNG
            opt.zero_grad()
            loss.backward()
            opt.step()
            return float(loss.detach())

        loop = TrainLoop(out, steps=6, desc="t", stateful={"w": w, "opt": opt}, config={"a": 1}, save_every=2,
                         stop_after=stop_after)
        return loop.run(step), w

    full, w_full = run(tmp_path / "a")
    part, _ = run(tmp_path / "b", stop_after=3)
    assert not part.finished and part.steps == 3 and (tmp_path / "b" / "train-state.pt").exists()
    rest, w_rest = run(tmp_path / "b")
    assert rest.finished and rest.resumed_from == 3
    assert torch.equal(w_full.weight, w_rest.weight)
    assert rest.final_loss == full.final_loss
    loop = TrainLoop(tmp_path / "b", steps=6, desc="t", stateful={}, config={"a": 2})
    kme.save_train_state(tmp_path / "b", loop._state())
    with pytest.raises(kme.ConfigError, match="other settings"):
        TrainLoop(tmp_path / "b", steps=6, desc="t", stateful={}, config={"a": 1}).restore()
