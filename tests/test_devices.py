"""Loading like transformers: dtype, device, device_map and max_memory (docs/devices.md).

On this CPU-only torch: a bfloat16 model is edited by ROME and MEMIT and every undo restores
every weight bit for bit; device maps that place modules on cpu load, edit and undo exactly;
devices the machine lacks are refused by ``kme validate`` with exit 2.
"""

from __future__ import annotations

import pytest
import torch
from conftest import write_pipeline

from kme.errors import ModelLoadError
from kme.models.loading import ModelSpec, check_model_devices, load_model

pytest.importorskip("kme_rome")
pytest.importorskip("kme_memit")

# ROME with identity covariance (no statistics); MEMIT with key statistics from a tiny corpus
ROME = {"mom2_adjustment": False, "progress": False, "context_template_length_params": [[5, 1]],
        "fact_token": "last", "v_weight_decay": 0.0, "clamp_norm_factor": 1000.0, "kl_factor": 0.0,
        "v_num_grad_steps": 10, "layer": 1}
MEMIT = {**ROME, "mom2_adjustment": True, "stats_corpus": "factworld", "stats_samples": 50, "layers": [0, 1]}
MEMIT.pop("layer")


@pytest.fixture(scope="module")
def full_pm():
    import kme

    return kme.build_plugin_manager()


@pytest.fixture(autouse=True)
def _stats_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KME_STATS_DIR", str(tmp_path_factory.getbasetemp() / "device-stats"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _state(m):
    return {k: v.detach().clone() for k, v in m.model.state_dict().items()}


def _changed(m, before):
    return [k for k, v in m.model.state_dict().items() if not torch.equal(v, before[k])]


def _requests():
    from kme.conformance import default_requests

    return default_requests()[:2]


def _edit_and_undo(m):
    """ROME then MEMIT; undo one, then all: bit-exact at each step."""
    pristine = _state(m)
    reqs = _requests()
    h1 = m.edit("rome", reqs[:1], ROME)
    after_rome = _state(m)
    h2 = m.edit("memit", reqs, MEMIT)
    assert _changed(m, pristine), "the edits changed no weight"
    for h in (h1, h2):
        for name, d in h.deltas.items():
            p = m.parameter(name)
            assert d.dtype == torch.float32 and d.device.type == "cpu"  # the editor's values, kept
            assert p.dtype == m.model.dtype and torch.isfinite(p).all()
    m.undo(h2)
    assert _changed(m, after_rome) == []  # back to exactly the weights ROME left
    h2 = m.edit("memit", reqs, MEMIT)
    m.undo(h1)  # undo the first, keep the second: pristine + MEMIT's delta, replayed
    m.undo()
    assert _changed(m, pristine) == []
    return h2


def test_bfloat16_model_is_edited_by_rome_and_memit_and_undone_bit_for_bit(full_pm, model_dir):
    m = load_model(ModelSpec(name=model_dir, dtype="bfloat16"), full_pm)
    assert {p.dtype for p in m.model.parameters()} == {torch.bfloat16}
    assert m.device == torch.device("cpu") and m.devices == [torch.device("cpu")]
    _edit_and_undo(m)


def test_bf16_delta_is_rounded_once_and_replayed_identically(full_pm, model_dir):
    m = load_model(ModelSpec(name=model_dir, dtype="bfloat16"), full_pm)
    name = m.weight_name(0)
    p = m.parameter(name)
    w0 = p.detach().clone()
    d = torch.randn(p.shape) * 1e-3  # mostly below bf16 resolution of the weights
    from kme.data import EditRequest

    r = EditRequest(case_id="x", prompt="The capital of France is", subject="France", target_new="Rome")
    h = m.new_handle(m.make_editor("rome", ROME), [r])
    h.add_delta(name, d)
    h.add_delta(name, d)  # a second change in the same edit
    expected = (w0.float() + 2 * d).to(torch.bfloat16)
    assert torch.equal(p.detach(), expected)
    assert torch.equal(h.deltas[name], d + d)
    m.stack.append(h)
    with m.suspended():
        assert torch.equal(m.parameter(name).detach(), w0)
    assert torch.equal(m.parameter(name).detach(), expected)
    m.undo()
    assert torch.equal(m.parameter(name).detach(), w0)


def test_set_param_on_a_bf16_weight_sets_it_exactly(full_pm, model_dir):
    m = load_model(ModelSpec(name=model_dir, dtype="bfloat16"), full_pm)
    name = m.weight_name(1)
    w0 = m.parameter(name).detach().clone()
    target = (torch.randn(w0.shape)).to(torch.bfloat16)
    from kme.data import EditRequest

    r = EditRequest(case_id="x", prompt="The capital of France is", subject="France", target_new="Rome")
    h = m.new_handle(m.make_editor("rome", ROME), [r])
    h.set_param(name, target)
    assert torch.equal(m.parameter(name).detach(), target)
    m.stack.append(h)
    m.undo()
    assert torch.equal(m.parameter(name).detach(), w0)


@pytest.mark.parametrize("device_map", [
    {"": "cpu"},
    {"transformer": "cpu", "lm_head": "cpu"},
    "auto",
], ids=["one-entry", "two-entries", "auto"])
def test_device_map_on_cpu_loads_edits_and_undoes_exactly(full_pm, model_dir, device_map):
    pytest.importorskip("accelerate")
    max_memory = {"cpu": "2GiB"} if device_map == "auto" else None
    m = load_model(ModelSpec(name=model_dir, dtype="bfloat16", device_map=device_map, max_memory=max_memory),
                   full_pm)
    assert m.devices == [torch.device("cpu")] and m.model.dtype == torch.bfloat16
    _edit_and_undo(m)


def test_float32_deltas_are_unchanged(full_pm, model_dir):
    m = load_model(model_dir, full_pm)  # default float32 on cpu: the old path, bit for bit
    name = m.weight_name(0)
    p = m.parameter(name)
    w0 = p.detach().clone()
    d = torch.randn(p.shape, dtype=torch.float64)
    from kme.data import EditRequest

    r = EditRequest(case_id="x", prompt="The capital of France is", subject="France", target_new="Rome")
    h = m.new_handle(m.make_editor("rome", ROME), [r])
    h.add_delta(name, d)
    assert torch.equal(p.detach(), w0 + d.float()) and h.deltas[name].dtype == torch.float32


# -- the spec ---------------------------------------------------------------------------------
def test_spec_keys_validate_and_leave_old_dumps_unchanged():
    assert ModelSpec(name="m").model_dump() == {"name": "m", "dtype": "float32", "device": "cpu",
                                                "revision": None, "trust_remote_code": False}
    s = ModelSpec(name="m", device_map={"transformer.h": 0, "lm_head": "cuda:1", "transformer.wte": "cpu"},
                  max_memory={0: "20GiB", "cpu": 10**9})
    assert s.device_map == {"transformer.h": 0, "lm_head": "cuda:1", "transformer.wte": "cpu"}
    assert s.model_dump()["max_memory"] == {0: "20GiB", "cpu": 10**9}
    assert ModelSpec.model_validate(s.model_dump(mode="json")) == s  # a saved run's config reloads
    from pydantic import ValidationError

    for bad, msg in [({"device_map": "everywhere"}, "is not a device_map"),
                     ({"device_map": {"": "disk"}}, "offload"),
                     ({"device_map": {"": "meta"}}, "offload"),
                     ({"device_map": {"": "tpu"}}, "is not a device"),
                     ({"device_map": {}}, "empty device_map"),
                     ({"device_map": "auto", "device": "cuda"}, "not both"),
                     ({"max_memory": {"cpu": "1GiB"}}, "add device_map"),
                     ({"device_map": "auto", "max_memory": {"cpu": "lots"}}, "is not a size"),
                     ({"device": "meta"}, "not a device kme can place")]:
        with pytest.raises(ValidationError, match=msg):
            ModelSpec(name="m", **bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only torch")
def test_devices_this_machine_lacks_are_load_errors():
    for spec, where in [(ModelSpec(name="m", device="cuda"), "model.device"),
                        (ModelSpec(name="m", device="cuda:3"), "model.device"),
                        (ModelSpec(name="m", device_map={"transformer": "cpu", "lm_head": 0}),
                         "model.device_map['lm_head']"),
                        (ModelSpec(name="m", device_map="auto", max_memory={"cuda:1": "1GiB"}),
                         "model.max_memory['cuda:1']")]:
        with pytest.raises(ModelLoadError) as e:
            check_model_devices(spec)
        assert e.value.where == where
    check_model_devices(ModelSpec(name="m", device_map="auto"))  # accelerate falls back to cpu


VALIDATE = "model: {{name: ./nowhere, {model}}}\ndataset: toy\nmetrics: [toy_logprob]\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only torch")
@pytest.mark.parametrize("model,message", [
    ("device: cuda", "model.device: device 'cuda' is not available"),
    ("device: 'cuda:3'", "model.device: device 'cuda:3' is not available"),
    ("device: meta", "model.device"),
    ("device_map: {transformer: cpu, lm_head: 0}", "model.device_map['lm_head']: device 'cuda:0' is not available"),
    ("device_map: {'': disk}", "would offload weights"),
])
def test_validate_refuses_a_device_this_machine_lacks(kme_cli, tmp_path, model, message):
    p = write_pipeline(tmp_path / "p.yaml", VALIDATE.format(model=model))
    r = kme_cli("validate", p)
    assert r.code == 2, r
    assert message in r.err and str(p) in r.err and "Traceback" not in r.err, r


def test_validate_accepts_devices_that_exist(kme_cli, tmp_path):
    for model in ("device: cpu", "dtype: bfloat16, device_map: auto, max_memory: {cpu: 2GiB}",
                  "device_map: {transformer: cpu, lm_head: cpu}"):
        p = write_pipeline(tmp_path / "p.yaml", VALIDATE.format(model=model))
        r = kme_cli("validate", p)
        assert r.code == 0, r


def test_the_devices_doc_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "devices.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 1
    monkeypatch.setattr("tempfile.mkdtemp", lambda: str(tmp_path))
    exec(compile(blocks[0], "docs/devices.md", "exec"), {})
