"""ROME's update is the closed form of ROME Eq. 2 (survey Eq. 26), checked against quantities
the test computes itself:

- ``Δ`` is rank one and its row space (input side) is spanned by ``C⁻¹k*``, with ``C`` the
  key second moment and ``k*`` the key averaged over the random prefixes, whichever key the
  constraint is placed at (``insert_at``);
- the constraint holds: ``(W + Δ) k + b = v*`` at the key named by ``insert_at``.

Dropping ``C⁻¹`` (the direction becomes ``k*``) fails the first check: on these models
``C⁻¹k*`` and ``k*`` are far from parallel (the test asserts that too, so the check keeps its
power).
"""

from __future__ import annotations

import pytest
import torch

from kme import build_plugin_manager, load_model
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_editlib.hooks import mlp_out_weight
from kme_editlib.keys import average_keys, point_values
from kme_editlib.stats import key_second_moments
from kme_editlib.targets import optimise_targets
from kme_editlib.testing import TINY_TARGET_PARAMS
from kme_rome.editor import ROMEEditor, ROMEParams


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("rome-direction-stats"))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return abs(float(a @ b)) / float(a.norm() * b.norm())


# the shipped fact-world model (trained; keys read at the subject's last token) and tiny
# random models (keys at the last token: see kme_editlib.testing)
FACTWORLD = {"stats_samples": 200, "progress": False, "context_template_length_params": [[5, 2]]}


@pytest.mark.parametrize("family,layer,insert_at", [("gpt2", 1, "bare"), ("gpt2", 1, "average"),
                                                    ("llama", 1, "bare"), ("factworld", 0, "bare")])
def test_update_is_rank_one_along_c_inverse_k_and_meets_the_constraint(pm, stats_dir, family, layer, insert_at):
    m = load_model("factworld", pm) if family == "factworld" else tiny_model(family, pm)
    r = default_requests()[0]
    base = FACTWORLD if family == "factworld" else TINY_TARGET_PARAMS
    params = ROMEParams(**{**base, "v_num_grad_steps": 10, "layer": layer, "insert_at": insert_at,
                           "key_contexts": "prefixes", "stats_corpus": "factworld", "stats_dir": stats_dir})
    prefixes = params.prefixes(m)
    assert len(prefixes) > 1  # k* is an average over several contexts, distinct from the bare key
    point = (layer, "mlp_out")

    # everything the update should be made of, computed on the unedited model
    C = key_second_moments(m, [layer], corpus=params.stats_corpus, samples=params.stats_samples,
                           max_length=params.stats_max_length, cache_dir=params.stats_dir, progress=False)[layer]
    k_avg = average_keys(m, [r], [layer], prefixes, params.fact_token, groups=params.key_groups(prefixes))[layer][0]
    k_bare = average_keys(m, [r], [layer], [""], params.fact_token)[layer][0]
    v_star = optimise_targets(m, [r], [point], prefixes, params.target_config()).target(point)[0]
    name, W, b = mlp_out_weight(m, layer)
    W, b = W.clone(), None if b is None else b.clone()  # views of the parameters the edit changes
    direction = torch.linalg.solve(C.double(), k_avg.double())
    # the checks below can tell C⁻¹k* from k* and the averaged key from the bare one
    assert _cos(direction, k_avg) < 0.9
    assert _cos(direction, torch.linalg.solve(C.double(), k_bare.double())) < 0.999

    h = m.edit(ROMEEditor(params), [r])
    assert list(h.deltas) == [name]
    delta = m.layout.out_weight_as_linear(h.deltas[name]).double()  # [out, in]
    assert delta.shape == W.shape

    # rank one, with the input-side direction C⁻¹k* (the averaged key, even when inserting at the bare one)
    assert int(torch.linalg.matrix_rank(delta, rtol=1e-5)) == 1
    _, s, vh = torch.linalg.svd(delta)
    assert float(s[1]) < 1e-5 * float(s[0])
    assert _cos(vh[0], direction) > 0.999

    # the constraint: (W + Δ) k + b = v* at the key insert_at names
    k_at = k_bare if insert_at == "bare" else k_avg
    out = (W.double() + delta) @ k_at.double() + (0 if b is None else b.double())
    assert torch.allclose(out, v_star.double(), atol=1e-3 * float(v_star.norm()))
    if insert_at == "bare":  # the edited model itself now writes v* at the prompt's fact token
        got = point_values(m, [r], [point], params.fact_token)[point][0]
        assert torch.allclose(got, v_star, atol=1e-3 * float(v_star.norm()))
