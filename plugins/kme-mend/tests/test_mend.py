"""MEND: networks, training (resume), the editor on tiny models and the fact world, errors,
and the conformance kit on every tiny family (each with its own tiny checkpoint)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_mend.nets import GradientTransform, MendNetworks
from kme_mend.training import MendTrainConfig, default_layers, train_mend

ROOT = Path(tempfile.mkdtemp(prefix="kme-mend-test-"))
TINY = MendTrainConfig(steps=3, edits_per_step=2, loc_per_edit=2, rank=8, save_every=1)
_CKPTS: dict[str, Path] = {}


def _train_requests() -> list[kme.EditRequest]:
    out = []
    for r in default_requests():
        out.append(r.model_copy(update={"paraphrase_prompts": [f"Indeed, {r.text}"]}))
    out.append(kme.EditRequest(case_id=3, prompt="{} lives in", subject="Carol White", target_new="Berlin",
                               target_true="Madrid", paraphrase_prompts=["Carol White's home is in"]))
    return out


def tiny_checkpoint(family: str) -> Path:
    """A 3-step checkpoint for the tiny ``family`` model (what the conformance kit edits)."""
    if family not in _CKPTS:
        out = ROOT / family
        train_mend(tiny_model(family, kme.build_plugin_manager()), _train_requests(), str(out), TINY)
        _CKPTS[family] = out
    return _CKPTS[family]


def teardown_module() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)


class TestMendConformance(EditorConformance):
    editor_name = "mend"
    train_params = {"train": TINY.model_dump()}


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


# -- networks --------------------------------------------------------------------------------
def test_networks_start_as_identity_and_standardise_with_running_stats():
    torch.manual_seed(0)
    gt = GradientTransform(4, 6, rank=8, n_hidden=1, n_modes=2)
    u, d = torch.randn(50, 4) * 3 + 1, torch.randn(50, 6) * 0.1
    gt.train()
    gt(u[:20], d[:20])
    ut, dt = gt(u[20:], d[20:], mode=1)
    # the merged statistics are those of all 50 rows (Welford, batched)
    assert torch.allclose(gt.u_mean, u.mean(0), atol=1e-5)
    assert torch.allclose((gt.u_m2 / (gt.count - 1)).sqrt(), u.std(0), atol=1e-4)
    # identity at initialisation: the output is the standardised input
    assert torch.allclose(ut, (u[20:] - u.mean(0)) / (u.std(0) + 1e-7), atol=1e-4)
    gt.eval()
    before = gt.count.clone()
    gt(u, d)
    assert torch.equal(gt.count, before)  # frozen after training


def test_shared_networks_one_per_shape_with_modes():
    targets = [{"name": f"w{i}", "d_in": a, "d_out": b} for i, (a, b) in enumerate([(4, 8), (8, 4), (4, 8), (8, 4)])]
    nets = MendNetworks(targets, rank=4)
    assert sorted(nets.transforms) == ["4x8", "8x4"] and nets.modes == [0, 0, 1, 1]
    assert len(MendNetworks(targets, rank=4, shared=False).transforms) == 4
    assert nets.edit_lrs.shape == (4,)
    rebuilt = MendNetworks.from_config(nets.config())
    rebuilt.load_state_dict(nets.state_dict())


def test_default_layers_are_the_last_three(pm):
    assert default_layers(tiny_model("gpt2", pm)) == [1, 2, 3]
    assert default_layers(tiny_model("gpt2", pm, n_layer=2)) == [0, 1]


# -- training ----------------------------------------------------------------------------------
def test_training_writes_a_checkpoint_bound_to_the_base(pm):
    ck = tiny_checkpoint("gpt2")
    manifest = kme.read_trained_manifest(ck)
    assert manifest["editor"] == "mend" and manifest["config"]["layers"] == [1, 2, 3]
    assert manifest["metrics"]["steps"] == 3 and manifest["metrics"]["peak_rss_mb"] > 0
    assert not (ck / "train-state.pt").exists()
    names = [t["name"] for t in manifest["config"]["targets"]]
    assert names[:2] == ["transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight"]


def test_interrupted_training_resumes_to_the_same_networks(pm, tmp_path):
    reqs = _train_requests()
    cfg = TINY.model_copy(update={"steps": 4, "save_every": 100})
    full = train_mend(tiny_model("gpt2", pm), reqs, str(tmp_path / "full"), cfg)
    part = train_mend(tiny_model("gpt2", pm), reqs, str(tmp_path / "resumed"), cfg, stop_after=2)
    assert not part.finished and (tmp_path / "resumed" / "train-state.pt").exists()
    assert not (tmp_path / "resumed" / "weights.safetensors").exists()
    rest = train_mend(tiny_model("gpt2", pm), reqs, str(tmp_path / "resumed"), cfg)
    assert rest.finished and rest.resumed_from == 2 and rest.final_loss == full.final_loss
    a = kme.load_trained(tmp_path / "full", editor="mend", model=tiny_model("gpt2", pm)).tensors
    b = kme.load_trained(tmp_path / "resumed", editor="mend", model=tiny_model("gpt2", pm)).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a state made with other settings is not resumed silently
    train_mend(tiny_model("gpt2", pm), reqs, str(tmp_path / "other"), cfg, stop_after=1)
    with pytest.raises(kme.ConfigError, match="other settings"):
        train_mend(tiny_model("gpt2", pm), reqs, str(tmp_path / "other"), cfg.model_copy(update={"lr": 1.0}))


def test_training_forms_no_parameter_gradient(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    train_mend(m, _train_requests(), str(tmp_path / "ck"), TINY.model_copy(update={"steps": 1}))
    assert all(p.grad is None for p in m.model.parameters())
    assert all(p.requires_grad for p in m.model.parameters())  # restored


# -- the editor ----------------------------------------------------------------------------------
def test_edit_changes_only_the_checkpoint_weights_and_undoes(pm):
    m = tiny_model("gpt2", pm)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    h = m.edit("mend", default_requests()[:2], {"checkpoint": str(tiny_checkpoint("gpt2"))})
    assert sorted(h.deltas) == sorted(t["name"] for t in
                                      kme.read_trained_manifest(tiny_checkpoint("gpt2"))["config"]["targets"])
    assert h.meta["mend"]["edit_ms"] > 0 and len(h.meta["mend"]["delta_norms"]) == 6
    assert all(p.grad is None for p in m.model.parameters())
    m.undo()
    assert all(torch.equal(before[k], v) for k, v in m.model.state_dict().items())


def test_checkpoint_of_another_base_is_refused(pm):
    other = tiny_model("gpt2", pm, seed=1)
    ed = other.make_editor("mend", {"checkpoint": str(tiny_checkpoint("gpt2"))})
    with pytest.raises(kme.ConfigError, match="another base model"):
        ed.check_model(other)
    with pytest.raises(kme.ConfigError, match="another base model"):
        other.edit(ed, default_requests()[:1])


def test_errors_name_the_param(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.ConfigError, match="needs a trained checkpoint") as e:
        m.edit("mend", default_requests()[:1])
    assert "params.checkpoint" in str(e.value)
    with pytest.raises(kme.ConfigError, match="not a trained checkpoint"):
        m.make_editor("mend", {"checkpoint": str(tmp_path)}).check_model(m)
    with pytest.raises(kme.ConfigError, match="differ from the checkpoint"):
        m.make_editor("mend", {"checkpoint": str(tiny_checkpoint("gpt2")), "layers": [0]}).check_model(m)
    with pytest.raises(kme.ConfigError, match="lr_scale"):
        m.make_editor("mend", {"lr_scale": 0})
    with pytest.raises(kme.ConfigError, match="train.steps"):
        m.make_editor("mend", {"train": {"steps": 0}})
    with pytest.raises(kme.ConfigError, match="does not exist"):
        m.make_editor("mend", {"layers": [9]}).check_model(m)
    assert not m.make_editor("mend").is_trained()
    assert type(m.make_editor("mend")).capabilities.needs_training


def test_train_via_the_editor_returns_the_checkpoint_param(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    ed = m.make_editor("mend", {"train": TINY.model_dump() | {"steps": 1}, "layers": [3]})
    out = ed.train(m, _train_requests(), str(tmp_path / "ck"))
    assert out == {"checkpoint": str(tmp_path / "ck")}
    assert kme.read_trained_manifest(tmp_path / "ck")["config"]["layers"] == [3]


# -- the fact world ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def factworld(pm):
    m = kme.load_model(kme.ModelSpec(name="factworld"), pm)
    ds = pm.datasets.get("factworld")({"limit": 12})
    return m, list(ds.train_requests()), list(ds.load())


def test_edits_take_on_the_fact_world(factworld, tmp_path_factory):
    m, train, evals = factworld
    out = tmp_path_factory.mktemp("fw") / "mend"
    cfg = MendTrainConfig(steps=25, edits_per_step=4, loc_per_edit=2)
    train_mend(m, train, str(out), cfg)
    ed = m.make_editor("mend", {"checkpoint": str(out)})
    gained = 0
    for r in evals:
        before = m.score([r.text], [r.target_new])[0].logprob
        m.edit(ed, [r])
        gained += m.score([r.text], [r.target_new])[0].logprob > before + 1.0
        m.undo()
    assert gained >= 0.75 * len(evals)
