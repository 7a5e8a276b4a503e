"""The context managers that set a model's mode, and the registration hook helper."""

import pytest

from kme.testing import tiny_model
from kme_editlib.hooks import eval_mode, frozen_params
from kme_editlib.registration import registration_hook


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt2")


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_mode_and_leaves_grads_alone(model, training):
    model.model.train(training)
    flags = [p.requires_grad for p in model.model.parameters()]
    with eval_mode(model):
        assert not model.model.training
        assert [p.requires_grad for p in model.model.parameters()] == flags
    assert model.model.training is training


def test_frozen_params_restores_grads_and_mode_even_on_error(model):
    model.model.train(True)
    first = next(model.model.parameters())
    first.requires_grad_(False)
    flags = [p.requires_grad for p in model.model.parameters()]
    with pytest.raises(RuntimeError), frozen_params(model):
        assert not model.model.training
        assert not any(p.requires_grad for p in model.model.parameters())
        raise RuntimeError("boom")
    assert model.model.training
    assert [p.requires_grad for p in model.model.parameters()] == flags
    first.requires_grad_(True)


def test_registration_hook_is_a_marked_hook_that_registers_in_order():
    seen = []
    hook = registration_hook("a", "b")
    assert hasattr(hook, "kme_impl")
    hook(seen.append)
    assert seen == ["a", "b"]

