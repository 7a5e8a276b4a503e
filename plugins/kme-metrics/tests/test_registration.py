"""The plugin registers every public metric name, and params choose the reported scoring mode."""

from __future__ import annotations

import pytest

import kme
from kme.errors import ConfigError
from kme_metrics import METRICS
from kme_metrics.accuracy import Accuracy

REQUIRED = {"accuracy", "locality", "generality", "retainability", "scalability", "scalability_relative",
            "efficacy_score", "efficacy_magnitude", "paraphrase_score", "paraphrase_magnitude",
            "neighborhood_score", "neighborhood_magnitude", "fluency", "consistency", "portability",
            "multihop_accuracy", "token_accuracy", "privacy_leak", "contrastive_gap", "reversibility"}


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager()


def test_entry_point_registers_every_public_name(pm):
    assert set(METRICS) == REQUIRED
    assert REQUIRED <= set(pm.metrics)
    assert {pm.metrics.owner(n) for n in REQUIRED} == {"metrics"}
    assert not [f for f in pm.failures if f.name == "metrics"]


def test_every_metric_declares_scoring_direction_and_equation(pm):
    for name in REQUIRED:
        cls = pm.metrics.get(name)
        m = cls()
        assert type(m).scoring and cls.description and cls.equation, name
        assert m.info()["scoring"] == type(m).scoring
    lower_better = {n for n in REQUIRED if not pm.metrics.get(n).higher_is_better}
    assert lower_better == {"scalability", "scalability_relative", "privacy_leak", "contrastive_gap"}


@pytest.mark.parametrize("name,params,label", [
    ("accuracy", {}, "teacher-forced-exact-match"),
    ("accuracy", {"scoring": "token"}, "teacher-forced-token-accuracy"),
    ("generality", {"scoring": "exact"}, "greedy-exact-match"),
    ("portability", {}, "teacher-forced-token-accuracy"),
    ("multihop_accuracy", {}, "greedy-exact-match"),
    ("locality", {}, "greedy-agreement"),
    ("locality", {"mode": "top1"}, "top1-agreement"),
    ("scalability", {"scoring": "token"}, "accuracy-gap/teacher-forced-token-accuracy"),
    ("retainability", {}, "accuracy-change/teacher-forced-exact-match"),
    ("efficacy_score", {}, "probability-comparison"),
    ("efficacy_magnitude", {"length_normalize": False}, "probability-difference/sequence-logprob"),
])
def test_the_class_the_runner_sees_carries_the_chosen_scoring(pm, name, params, label):
    cls = pm.metrics.get(name)
    m = cls(cls.parse_params(params))
    assert type(m).scoring == label               # the runner reads type(metric).scoring
    assert isinstance(m, cls) and m.name == name and type(m).protocols == cls.protocols


def test_registered_class_keeps_its_default_label(pm):
    Accuracy({"scoring": "token"})
    assert pm.metrics.get("accuracy").scoring == "teacher-forced-exact-match"


@pytest.mark.parametrize("name,params,field", [
    ("accuracy", {"scoring": "bleu"}, "scoring"),
    ("locality", {"mode": "argmax"}, "mode"),
    ("scalability", {"sample_size": 0}, "sample_size"),
    ("fluency", {"max_tokens": 5}, "max_tokens"),
    ("portability", {"kinds": ["sideways"]}, "kinds"),
])
def test_bad_params_name_the_field(pm, name, params, field):
    cls = pm.metrics.get(name)
    with pytest.raises(ConfigError) as e:
        cls.parse_params(params, where="pipeline.yaml: metrics[0].params")
    assert field in str(e.value) and "pipeline.yaml" in str(e.value)


def test_the_python_example_in_the_docs_runs(capsys):
    import re
    from pathlib import Path

    doc = Path(__file__).parents[3] / "docs" / "metrics.md"
    code = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert code, "docs/metrics.md lost its Python example"
    exec(compile(code[0], str(doc), "exec"), {})
    out = capsys.readouterr().out
    assert "accuracy teacher-forced-token-accuracy" in out and "locality greedy-agreement [1.0]" in out
