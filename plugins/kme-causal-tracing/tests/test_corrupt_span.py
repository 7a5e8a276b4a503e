"""Corrupting the verb or object span instead of the subject (commonsense statements)."""

import pytest

from kme import DatasetRecordError, build_plugin_manager
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_causal_tracing.trace import embedding_std, trace_request
from kme_editlib.spans import anchor_request


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


def _spanned():
    return default_requests()[1].model_copy(update={"meta": {"verb": "was born", "object": "in"}})


def test_the_verb_span_is_the_one_corrupted(pm):
    m = tiny_model("gpt2", pm)
    t = trace_request(m, anchor_request(_spanned(), "verb"), noise_std=3 * embedding_std(m), samples=3, window=1,
                      kinds=("hidden",))
    s0, s1 = t.subject_range
    assert "".join(t.tokens[s0:s1 + 1]).strip() == "was born"
    for i in range(s0):  # the subject before the verb is clean now
        assert all(abs(v) < 1e-7 for v in t.effects["hidden"][i])


def test_locator_param_default_unchanged_and_missing_span_refused(pm):
    m = tiny_model("gpt2", pm)
    cls = pm.locators.get("causal-tracing")
    assert cls({}).params.corrupt == "subject"
    where = cls({"corrupt": "object", "samples": 2, "kinds": ["mlp"], "plot": False}).locate(m, [_spanned()])
    assert where.scores["corrupted"] == "object" and sorted(where.layers) == [0, 1, 2, 3]
    with pytest.raises(DatasetRecordError, match="has no verb span"):
        cls({"corrupt": "verb", "samples": 2}).locate(m, default_requests()[:1])
