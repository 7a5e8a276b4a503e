"""Plugin discovery, error isolation, hook validation, registries, composition order."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import pytest
import toyplugins

import kme
from kme.errors import KmeError, UnknownComponentError
from kme.plugins import build_plugin_manager


def test_entry_point_plugin_is_discovered(installed_plugin_dir):
    pm = build_plugin_manager()
    assert "entry_editor" in pm.editors and "entry_metric" in pm.metrics
    assert pm.editors.owner("entry_editor") == "testplugin"
    info = {p["name"]: p for p in pm.describe()["plugins"]}
    assert info["testplugin"]["distribution"] == "kme-testplugin"
    assert info["testplugin"]["version"] == "0.0.1"
    assert info["testplugin"]["hooks"] == ["kme_register_editors", "kme_register_metrics"]
    assert info["testplugin"]["provides"] == {"editors": ["entry_editor"], "metrics": ["entry_metric"]}


def test_broken_and_misspelled_plugins_are_reported_not_fatal(installed_plugin_dir):
    pm = build_plugin_manager()
    failures = {f.name: f for f in pm.failures}
    assert failures["broken"].phase == "import"
    assert "simulated" in failures["broken"].error
    assert failures["misspelled"].phase == "validate"
    assert "kme_register_editor" in failures["misspelled"].error
    assert pm.get_plugin("misspelled") is None
    assert "entry_editor" in pm.editors  # the good plugin still works


def test_autoload_can_be_disabled_or_narrowed(installed_plugin_dir, monkeypatch):
    monkeypatch.setenv("KME_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = build_plugin_manager()
    assert "entry_editor" not in pm.editors and not pm.failures
    monkeypatch.delenv("KME_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("KME_LOAD_PLUGINS", "testplugin")
    pm = build_plugin_manager()
    assert "entry_editor" in pm.editors
    assert not pm.failures  # broken/misspelled were not even imported
    assert pm.get_plugin("broken") is None


def test_explicit_plugin_with_misspelled_hook_raises():
    class Bad:
        @kme.hookimpl
        def kme_register_metric(self, register):  # typo
            pass

    with pytest.raises(KmeError, match="kme_register_metric"):
        build_plugin_manager([Bad()], load_entrypoints=False)


def test_unmarked_hook_function_is_an_error():
    class Unmarked:
        def kme_register_editors(self, register):
            pass

    with pytest.raises(KmeError, match="not marked with @kme.hookimpl"):
        build_plugin_manager([Unmarked()], load_entrypoints=False)


def test_registry_refuses_duplicates_and_wrong_types_and_suggests_names(pm):
    class Again:
        @kme.hookimpl
        def kme_register_metrics(self, register):
            register(toyplugins.TargetLogprob)

    with pytest.raises(KmeError, match="registered twice"):
        build_plugin_manager([toyplugins, Again()], load_entrypoints=False)

    class NotAMetric:
        @kme.hookimpl
        def kme_register_metrics(self, register):
            register(dict)

    with pytest.raises(KmeError, match="not a subclass of kme.components.Metric"):
        build_plugin_manager([NotAMetric()], load_entrypoints=False)

    with pytest.raises(UnknownComponentError, match="did you mean 'toy_shift'"):
        pm.editors.get("toy_shfit")


def test_params_are_strict(pm):
    with pytest.raises(KmeError, match="scael: unknown field"):
        pm.editors.get("toy_shift")({"scael": 2})
    with pytest.raises(KmeError, match="layer: Input should be a valid integer"):
        pm.editors.get("toy_shift")({"layer": "middle"})


def test_registration_failure_of_entry_point_plugin_is_isolated(installed_plugin_dir, monkeypatch):
    import kme_testplugin

    def boom(register):
        raise RuntimeError("registration exploded")

    monkeypatch.setattr(kme_testplugin.kme_register_metrics, "__code__", boom.__code__)
    pm = build_plugin_manager()
    assert any(f.name == "testplugin" and f.phase == "register" for f in pm.failures)
    assert "entry_editor" in pm.editors  # its other hook still registered


def test_tryfirst_implementation_answers_before_the_builtin_dispatch(pm):
    from kme.testing import tiny_model

    calls = []

    class Interceptor:
        @kme.hookimpl(tryfirst=True)
        def kme_edit(self, model, editor, requests, location):
            calls.append(editor.name)
            h = model.new_handle(editor, requests)
            h.meta["intercepted"] = True
            return h

    pm2 = build_plugin_manager([toyplugins, Interceptor()], load_entrypoints=False)
    m = tiny_model("gpt2", pm2)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    h = m.edit("toy_shift", [toyplugins.ToyDataset().load()[0]])
    assert calls == ["toy_shift"] and h.meta["intercepted"]
    assert all((before[k] == v).all() for k, v in m.model.state_dict().items())  # dispatch never ran


def test_wrapper_sees_every_edit_and_guards_record_timing(pm):
    from kme.testing import tiny_model

    seen = []

    class Wrapper:
        @kme.hookimpl(wrapper=True)
        def kme_edit(self, model, editor, requests, location):
            seen.append(("before", editor.name))
            handle = yield
            seen.append(("after", editor.name, len(handle.deltas)))
            return handle

    class SlowShift(toyplugins.ShiftEditor):
        name = "slow_shift"

        def apply(self, model, requests, location=None):
            time.sleep(0.05)
            return super().apply(model, requests, location)

    class Slow:
        @staticmethod
        @kme.hookimpl
        def kme_register_editors(register):
            register(SlowShift)

    pm2 = build_plugin_manager([toyplugins, Wrapper(), Slow()], load_entrypoints=False)
    m = tiny_model("gpt2", pm2)
    reqs = toyplugins.ToyDataset().load()
    h = m.edit("toy_shift", reqs[:2])
    m.edit("toy_memory", reqs[:1])
    assert seen == [("before", "toy_shift"), ("after", "toy_shift", 1), ("before", "toy_memory"),
                    ("after", "toy_memory", 0)]
    # the guard times the editor's work: at least the 50 ms it sleeps, at most the call's wall time
    t0 = time.perf_counter()
    slow = m.edit("slow_shift", reqs[:1])
    wall = time.perf_counter() - t0
    assert 0.05 <= slow.meta["edit_seconds"] <= wall
    assert 0 < h.meta["edit_seconds"] < slow.meta["edit_seconds"]
    # peak resident memory in MiB: a process holding torch uses tens of MiB at least, and the
    # peak only grows afterwards
    peak_now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert 50 < h.meta["peak_rss_mb"] <= slow.meta["peak_rss_mb"] <= peak_now


def test_kme_plugins_command_lists_plugins(kme_cli):
    r = kme_cli("plugins", "--json")
    assert r.code == 0, r
    d = json.loads(r.out)
    names = {p["name"]: p for p in d["plugins"]}
    assert names["kme.builtin.layouts"]["provides"]["model_layouts"] == [
        "gpt2", "gpt_neox", "gptj", "llama", "mistral", "qwen2"]
    assert names["testplugin"]["provides"]["editors"] == ["entry_editor"]
    assert {f["name"] for f in d["failures"]} >= {"broken", "misspelled"}
    text = kme_cli("plugins")
    assert "testplugin (kme-testplugin 0.0.1)" in text.out
    assert "FAILED broken" in text.out
    assert "warning: plugin 'broken'" in text.err


def test_kme_plugins_from_a_fresh_process(installed_plugin_dir):
    env = dict(os.environ, PYTHONPATH=str(installed_plugin_dir), KME_LOAD_PLUGINS="testplugin")
    out = subprocess.run([sys.executable, "-m", "kme.cli", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    assert "testplugin" in {p["name"] for p in d["plugins"]}
    assert d["failures"] == []
