"""The conformance kit itself: its undo check fails an editor whose undo leaves a forward hook
behind (weights and memory restored, outputs not), and passes the same editor when its undo
removes the hook."""

from __future__ import annotations

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
