"""A method's own term in the target optimisation (:class:`kme_editlib.targets.ExtraTerm`)."""

from __future__ import annotations

import pytest
import torch

from kme import KmeError, build_plugin_manager
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_editlib.targets import ExtraTerm, TargetConfig, optimise_targets
from kme_editlib.tokens import Sequence_, encode

CFG = TargetConfig(steps=12, lr=0.5, weight_decay=0.0, clamp_norm_factor=1000.0, kl_factor=0.0, fact_token="last",
                   early_stop_loss=0.0)
PREFIXES = ["", "Once upon a time. "]
POINT = (1, "mlp_out")


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt2", build_plugin_manager())


def _pull(model, requests, weight: float) -> ExtraTerm:
    """Pull the final hidden state at each subject's last token towards a fixed direction."""
    seqs = []
    for i, r in enumerate(requests):
        ids = encode(model, r.subject)
        seqs.append(Sequence_(ids, len(ids) - 1, i, "extra", (len(ids) - 1,)))
    goal = torch.linspace(-1, 1, model.model.config.n_embd)

    def loss(chunk, hidden):
        return torch.stack([(hidden[k, s.loss_positions[0]].float() - goal.to(hidden.device)).norm()
                            for k, s in enumerate(chunk)])

    return ExtraTerm(sequences=seqs, loss=loss, weight=weight)


def test_a_zero_weight_term_changes_nothing(model):
    reqs = default_requests()[:2]
    plain = optimise_targets(model, reqs, [POINT], PREFIXES, CFG)
    with_term = optimise_targets(model, reqs, [POINT], PREFIXES, CFG, extra=_pull(model, reqs, 0.0))
    assert plain.extra == [] and len(with_term.extra) == 2
    assert torch.allclose(plain.delta[POINT], with_term.delta[POINT], atol=1e-5)
    assert with_term.loss == pytest.approx(plain.loss, rel=1e-5)  # the term is not in the stopping loss


def test_the_term_is_optimised_and_requests_stay_independent(model):
    reqs = default_requests()
    first = optimise_targets(model, reqs, [POINT], PREFIXES, TargetConfig(**{**CFG.__dict__, "steps": 1}),
                             extra=_pull(model, reqs, 1.0))
    last = optimise_targets(model, reqs, [POINT], PREFIXES, CFG, extra=_pull(model, reqs, 1.0))
    assert all(b < a for a, b in zip(first.extra, last.extra))
    alone = optimise_targets(model, reqs[1:2], [POINT], PREFIXES, CFG, extra=_pull(model, reqs[1:2], 1.0))
    assert torch.allclose(alone.delta[POINT][0], last.delta[POINT][1], atol=1e-4)


def test_malformed_sequences_are_refused(model):
    reqs = default_requests()[:1]
    term = _pull(model, reqs, 1.0)
    term.sequences[0].owner = 5  # no such request
    with pytest.raises(KmeError, match="extra-term sequences"):
        optimise_targets(model, reqs, [POINT], PREFIXES, CFG, extra=term)
