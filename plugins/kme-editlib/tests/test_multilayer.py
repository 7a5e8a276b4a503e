"""The multi-layer insertion loop (MEMIT Alg. 1) with an exact solver.

With keys read on the bare prompt (``key_prefixes=[""]``) and a solver that writes its
residual exactly (``Δ K = R``), the top layer's update adds its residual straight to the
residual stream at the target point: whatever the lower layers did, a spread that gives the
top layer the whole remaining residual (share 1 when one layer is left, as MEMIT's
``1/(L − l + 1)`` and PMET's ``1/√(L − l + 1)`` do) leaves nothing at the top. A spread of
``1/L`` for every layer leaves about ``(1 − 1/L)^L`` of it.
"""

from __future__ import annotations

import pytest
import torch

import kme
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_editlib.keys import point_values
from kme_editlib.multilayer import even_spread, insert_over_layers, sqrt_spread


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager(load_entrypoints=False)


def test_spreads_give_each_layer_its_published_share():
    for n in range(1, 6):
        assert even_spread(n) == pytest.approx(1 / n)
        assert sqrt_spread(n) == pytest.approx(n ** -0.5)


class _Loop(kme.Editor):
    """Runs :func:`insert_over_layers` with an exact least-norm solver, recording what it solved."""

    name = "multilayer_probe"
    description = "test editor: the MEMIT insertion loop with an exact solver"
    capabilities = kme.Capabilities(kind="parametric", batch=True)

    def __init__(self, layers, targets, spread):
        super().__init__()
        self.layers, self.targets, self.spread, self.solved = layers, targets, spread, []

    def apply(self, model, requests, location=None):
        def solve(layer, K, R):
            self.solved.append((layer, K.clone(), R.clone()))
            return R.double() @ torch.linalg.pinv(K.double())   # Δ K = R

        h = model.new_handle(self, requests)
        point = (self.layers[-1], "block")
        h.meta["per_layer"] = insert_over_layers(model, h, requests, self.layers, point, self.targets, [""],
                                                 "last", solve, spread=self.spread)
        return h


@pytest.mark.parametrize("family,layers", [("gpt2", [0, 1, 2]), ("gpt2", [1, 3]), ("llama", [0, 2, 3])])
@pytest.mark.parametrize("spread,first_share", [(even_spread, lambda n: 1 / n), (sqrt_spread, lambda n: n ** -0.5)],
                         ids=["even", "sqrt"])
def test_the_top_layer_is_left_no_residual(pm, family, layers, spread, first_share):
    m = tiny_model(family, pm)
    reqs = default_requests()
    point = (layers[-1], "block")
    h0 = point_values(m, reqs, [point], "last")[point]
    g = torch.Generator().manual_seed(0)
    offset = torch.randn(h0.shape, generator=g)
    targets = h0 + 5 * offset / offset.norm(dim=-1, keepdim=True)   # residuals of norm 5
    editor = _Loop(layers, targets, spread)
    h = m.edit(editor, reqs)

    assert [x[0] for x in editor.solved] == layers and sorted(h.deltas) == sorted(m.weight_name(i) for i in layers)
    # the lowest layer writes its share of the whole residual
    _, _, r_first = editor.solved[0]
    assert torch.allclose(r_first.T, (targets - h0) * first_share(len(layers)), atol=1e-4)
    # each diagnostic is the residual the layer saw: 5 at the lowest, shrinking upwards
    seen = [x["residual_norm"] for x in h.meta["per_layer"]]
    assert seen[0] == pytest.approx(5.0, rel=1e-4)
    assert all(a > b for a, b in zip(seen, seen[1:]))

    # measured after every layer was updated: the top layer took all that was left
    left = (targets - point_values(m, reqs, [point], "last")[point]).norm(dim=-1)
    assert float(left.max()) < 1e-4, left   # float32 rounding: ~1e-6 of the residual's 5
