"""The worked example (ft-l-demo) meets the editor contract and moves probability towards the new object."""

from __future__ import annotations

import pytest
import torch

from kme.conformance import EditorConformance, default_requests
from kme.plugins import build_plugin_manager
from kme.testing import tiny_model


class TestFTLConformance(EditorConformance):
    editor_name = "ft-l-demo"
    params = {"layers": [1], "lr": 1e-2, "steps": 5, "norm_constraint": 1e-2}
    plugins: list = []  # found through its entry point, as users would


def test_ftl_raises_the_target_probability_and_respects_the_constraint():
    m = tiny_model("gpt2", build_plugin_manager())
    r = default_requests()[0]
    before = m.score([r.text], [r.target_new])[0].logprob
    name = m.weight_name(2, "mlp_out")
    w0 = m.parameter(name).detach().clone()
    h = m.edit("ft-l-demo", [r], {"layers": [2], "lr": 5e-3, "steps": 20, "norm_constraint": 2e-3})
    after = m.score([r.text], [r.target_new])[0].logprob
    assert after > before + 0.05
    assert (m.parameter(name).detach() - w0).abs().max() <= 2e-3 + 1e-6
    assert set(h.deltas) == {name}


def test_layer_out_of_range_is_a_clear_error():
    from kme.errors import KmeError

    m = tiny_model("llama", build_plugin_manager())
    with pytest.raises(KmeError, match="layer 12 does not exist"):
        m.edit("ft-l-demo", default_requests()[:1], {"layers": [12]})
    assert m.stack == [] and torch.isfinite(m.parameter(m.weight_name(0))).all()
