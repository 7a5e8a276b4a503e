"""T-Patcher meets the editor contract; each edit adds one neuron that fires on the edit and
stays silent on the memory set; undo and patches remove and restore the neurons exactly."""

from __future__ import annotations

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

MEMORY = ["0 1 2 3 4 5 6 7 8 9", "a b c d e f g h i j k", "The Eiffel Tower is located in Paris."]


class TestTPatcherConformance(EditorConformance):
    editor_name = "t-patcher"
    params = {"steps": 40, "memory_texts": MEMORY}
    expects_top1 = True


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def test_one_neuron_per_edit_active_on_the_edit_silent_on_memory(pm):
    m = tiny_model("gpt2", pm)
    reqs = default_requests()[:2]
    h = m.edit("t-patcher", reqs, {"steps": 100, "memory_texts": MEMORY})
    assert h.state["keys"].shape == (2, 32) and h.state["values"].shape == (2, 32) and h.state["bias"].shape == (2,)
    assert not h.deltas  # original weights untouched
    for info in h.meta["t_patcher"]["patches"]:
        assert info["edit_correct"]
        assert info["min_edit_activation"] > 0 > info["max_memory_activation"]
    for r in reqs:
        assert int(m.next_token_logprobs([r.text])[0].argmax()) == m.target_ids(r.text, r.target_new)[0]


def test_sampled_memory_needs_no_texts(pm):
    m = tiny_model("gpt2", pm)
    h = m.edit("t-patcher", default_requests()[:1], {"steps": 5, "memory_samples": 4, "memory_sample_tokens": 8})
    assert h.meta["t_patcher"]["memory_texts"] == 4 and h.meta["t_patcher"]["memory_states"] > 4


def test_sequential_patches_stack_and_undo_in_any_order(pm, tmp_path):
    m = tiny_model("qwen2", pm)
    probe = [r.text for r in default_requests()]
    base = m.next_token_logprobs(probe)
    hs = [m.edit("t-patcher", [r], {"steps": 10, "memory_texts": MEMORY}) for r in default_requests()]
    mlp = m.layout.module(m.model, m.num_layers - 1, "mlp")
    assert len(mlp._forward_hooks) == 3
    m.save_patch(str(tmp_path / "p"))
    other = tiny_model("qwen2", pm)
    other.load_patch(str(tmp_path / "p"))
    assert torch.allclose(other.next_token_logprobs(probe), m.next_token_logprobs(probe), atol=1e-6)
    with m.suspended():
        assert torch.equal(m.next_token_logprobs(probe), base)
    m.undo(hs[1])
    assert len(mlp._forward_hooks) == 2
    m.undo()
    assert len(mlp._forward_hooks) == 0 and torch.equal(m.next_token_logprobs(probe), base)


def test_missing_memory_file_is_a_clear_error(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.KmeError, match="memory file .* does not exist"):
        m.edit("t-patcher", default_requests()[:1], {"memory_file": str(tmp_path / "nope.txt")})
    assert m.stack == [] and not m.layout.module(m.model, 3, "mlp")._forward_hooks
