"""The conformance kit itself: its undo check fails an editor whose undo leaves a forward hook
behind (weights and memory restored, outputs not), and passes the same editor when its undo
removes the hook; for trained editors it trains a tiny checkpoint per family and fails an
editor that accepts a checkpoint trained on another base model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

import kme
from kme.conformance import EditorConformance


class _HookParams(kme.Params):
    remove_on_undo: bool = True


class HookEditor(kme.Editor):
    """Shifts block 1's output by a constant through a forward hook (an extension-style edit)."""

    name = "toy_hook"
    description = "adds a constant to a block's output through a forward hook"
    Params = _HookParams
    capabilities = kme.Capabilities(kind="extension", batch=True, sequential=True)

    def apply(self, model, requests, location=None):
        h = model.new_handle(self, requests)
        block = model.layout.module(model.model, 1, "block")

        def shift(_mod, _inp, out):
            return (out[0] + 0.5, *out[1:]) if isinstance(out, tuple) else out + 0.5

        hook = block.register_forward_hook(shift)
        h.on_undo(hook.remove if self.params.remove_on_undo else (lambda: None))
        return h


class _Plugin:
    @staticmethod
    @kme.hookimpl
    def kme_register_editors(register):
        register(HookEditor)


_PM = []


class _Kit(EditorConformance):
    editor_name = "toy_hook"

    def plugin_manager(self):  # the kernel's builtins and the hook editor only: fast
        if not _PM:
            _PM.append(kme.build_plugin_manager([_Plugin()], load_entrypoints=False))
        return _PM[0]


def test_the_undo_check_sees_a_hook_left_behind():
    class Leaky(_Kit):
        params = {"remove_on_undo": False}

    with pytest.raises(AssertionError, match="logits on .* differ after undo"):
        Leaky().test_edit_then_undo_is_bitwise("gpt2")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_undo_check_passes_a_clean_undo(family):
    _Kit().test_edit_then_undo_is_bitwise(family)


def test_outputs_are_compared_exactly():
    """The probe is deterministic, so equality (not closeness) is the right test."""
    kit = _Kit()
    m = kit.make_model("gpt2")
    prompts = kit.probe_prompts()
    a, b = kit._outputs(m, prompts), kit._outputs(m, prompts)
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0])) and torch.equal(a[1], b[1])


# -- trained editors ---------------------------------------------------------------------------
class _TrainedParams(kme.Params):
    checkpoint: str | None = None
    steps: int = 100
    check_base: bool = True  # False: a careless editor that loads any checkpoint


class TrainedShift(kme.Editor):
    """"Trains" a scale (from the number of requests and steps) into a kernel checkpoint; an edit
    adds that scale times a fixed rank-one matrix to one MLP output projection."""

    name = "toy_trained_shift"
    description = "a trained scale for a rank-one weight change; for the kit's own tests"
    Params = _TrainedParams
    capabilities = kme.Capabilities(kind="parametric", needs_training=True)
    trainings: list[str] = []

    def is_trained(self):
        return self.params.checkpoint is not None

    def train(self, model, requests, out_dir):
        type(self).trainings.append(model.source)
        kme.save_trained(out_dir, editor=self.name, model=model,
                         tensors={"scale": torch.tensor([1e-3 * len(requests) * self.params.steps])},
                         config={"steps": self.params.steps})
        return {"checkpoint": out_dir}

    def apply(self, model, requests, location=None):
        if self.params.check_base:
            scale = kme.load_trained(self.params.checkpoint, editor=self.name, model=model).tensors["scale"]
        else:
            from safetensors.torch import load_file

            scale = load_file(f"{self.params.checkpoint}/weights.safetensors")["scale"]
        h = model.new_handle(self, requests)
        name = model.weight_name(0, "mlp_out")
        w = model.parameter(name)
        g = torch.Generator().manual_seed(0)
        h.add_delta(name, float(scale) * torch.randn(w.shape[0], 1, generator=g) @ torch.randn(1, w.shape[1],
                                                                                                generator=g))
        return h


class _TrainedPlugin:
    @staticmethod
    @kme.hookimpl
    def kme_register_editors(register):
        register(TrainedShift)


_TPM = []


class _TrainedKit(EditorConformance):
    editor_name = "toy_trained_shift"
    train_params = {"steps": 2}
    families = ("gpt2", "llama")

    def plugin_manager(self):
        if not _TPM:
            _TPM.append(kme.build_plugin_manager([_TrainedPlugin()], load_entrypoints=False))
        return _TPM[0]


def test_a_trained_editor_gets_a_checkpoint_per_family_and_the_refusal_check_passes():
    class Kit(_TrainedKit):
        pass

    TrainedShift.trainings.clear()
    kit = Kit()
    kit.test_trained_checkpoint_is_refused_on_another_base()
    kit.test_edit_then_undo_is_bitwise("llama")
    kit.test_patch_round_trip(Path(tempfile.mkdtemp()))
    kit.test_batch_and_sequential_as_declared()
    assert TrainedShift.trainings == ["tiny-gpt2", "tiny-llama"]  # once per family, with train_params
    out, params = kit.trained("gpt2")
    assert params == {"steps": 2, "checkpoint": str(out)}


def test_the_refusal_check_fails_an_editor_that_loads_another_base_checkpoint():
    class Careless(_TrainedKit):
        params = {"check_base": False}

    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        Careless().test_trained_checkpoint_is_refused_on_another_base()


def test_the_refusal_check_skips_editors_without_training_or_train_params():
    class Untrained(_TrainedKit):
        train_params = None

    with pytest.raises(pytest.skip.Exception, match="set train_params"):
        Untrained().test_trained_checkpoint_is_refused_on_another_base()
    with pytest.raises(pytest.skip.Exception, match="no trained parts"):
        _Kit().test_trained_checkpoint_is_refused_on_another_base()
