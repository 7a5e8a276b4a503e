import pytest
import torch

from kme import build_plugin_manager
from kme.conformance import default_requests
from kme.errors import EditFailedError
from kme.testing import tiny_model
from kme_alphaedit.editor import STATE_PREFIX, AlphaEditEditor
from kme_editlib.testing import TINY_TARGET_PARAMS

TINY_ALPHAEDIT = {**TINY_TARGET_PARAMS, "layers": [0, 1], "nullspace_threshold": 0.05, "nullspace_relative": True,
                  "L2": 0.01}


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


def test_update_lies_in_the_null_space_of_preserved_keys(pm):
    m = tiny_model("gpt2", pm)
    ed = AlphaEditEditor(TINY_ALPHAEDIT)
    h = m.edit(ed, default_requests()[:2])
    assert h.meta["nullspace_dims"] == {"0": pytest.approx(98, abs=30), "1": pytest.approx(100, abs=30)}
    for layer in (0, 1):
        P, dim = ed.projector(m, layer, ed.params.second_moments(m, [layer])[layer])
        d = m.layout.out_weight_as_linear(h.deltas[m.weight_name(layer, "mlp_out")]).double()
        assert float(d.norm()) > 0
        leak = d @ (torch.eye(P.shape[0], dtype=torch.float64) - P)
        assert float(leak.norm()) < 1e-4 * float(d.norm())


def test_sequential_edits_remember_earlier_keys_until_undone(pm):
    m = tiny_model("llama", pm)
    ed = AlphaEditEditor(TINY_ALPHAEDIT)
    reqs = default_requests()
    h1 = m.edit(ed, reqs[:1])
    assert ed.previous_gram(m, 0) is not None
    k = h1.state[f"{STATE_PREFIX}0"].double()
    assert torch.allclose(ed.previous_gram(m, 0), k @ k.T)
    h2 = m.edit(ed, reqs[1:])
    assert h2.meta["previous_edits"] == 1
    m.undo(h1)
    k2 = h2.state[f"{STATE_PREFIX}0"].double()
    assert torch.allclose(ed.previous_gram(m, 0), k2 @ k2.T)
    m.undo()
    assert ed.previous_gram(m, 0) is None


def test_an_empty_null_space_is_a_clear_error(pm):
    m = tiny_model("gpt2", pm)
    with pytest.raises(EditFailedError, match="null space at layer 0 is empty"):
        m.edit("alphaedit", default_requests()[:1], {**TINY_ALPHAEDIT, "nullspace_threshold": 1e-12,
                                                     "nullspace_relative": False})
    assert m.stack == []
