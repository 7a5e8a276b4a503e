import pytest

from kme import DatasetRecordError, KmeError, build_plugin_manager
from kme.conformance import default_requests
from kme.testing import tiny_model
from kme_editlib.spans import anchor_request
from kme_editlib.testing import TINY_TARGET_PARAMS

PARAMS = {**TINY_TARGET_PARAMS, "layers": [0, 1]}


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager()


def _spanned():
    r = default_requests()[1]  # "{} was born in", Alice Smith
    return r.model_copy(update={"meta": {"verb": "was born", "object": "in"}})


def test_default_is_the_released_best_setting_object(pm):
    cls = pm.editors.get("memit-csk")
    assert cls({}).params.edit_token == "object"


def test_anchor_moves_the_slot_to_the_span():
    r = _spanned()
    v = anchor_request(r, "verb")
    assert v.subject == "was born" and v.prompt == "Alice Smith {} in" and v.text == r.text
    assert v.meta["anchored_from"] == "Alice Smith"
    assert anchor_request(r, "subject") is r


@pytest.mark.parametrize("span", ["subject", "verb", "object"])
def test_edit_at_each_span_records_it_and_undoes(pm, span):
    m = tiny_model("gpt2", pm)
    r = _spanned()
    h = m.edit("memit-csk", [r], {**PARAMS, "edit_token": span, "fact_token": "subject_last"})
    assert h.meta["edit_token"] == span
    assert h.meta["edit_spans"] == [{"subject": "Alice Smith", "verb": "was born", "object": "in"}[span]]
    assert h.requests[0].subject == "Alice Smith"  # the record keeps the request as given
    assert h.deltas
    m.undo()
    assert m.stack == []


def test_the_edited_token_follows_the_span(pm):
    """Keys are read at the chosen span's last token: verb and subject edits of one request
    write different key directions."""
    m = tiny_model("gpt2", pm)
    r = _spanned()
    p = {**PARAMS, "fact_token": "subject_last", "mom2_adjustment": False}
    d = {}
    for span in ("subject", "verb"):
        h = m.edit("memit-csk", [r], {**p, "edit_token": span})
        d[span] = next(iter(h.deltas.values())).clone()
        m.undo()
    assert float((d["subject"] - d["verb"]).norm()) > 1e-3 * float(d["subject"].norm())


def test_bad_edit_token_is_refused(pm):
    cls = pm.editors.get("memit-csk")
    with pytest.raises(KmeError, match="edit_token"):
        cls({"edit_token": "adverb"})


def test_request_without_the_verb_span_is_a_clear_error(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    with pytest.raises(DatasetRecordError, match=r"request 0 has no verb span \(meta\['verb'\]"):
        m.edit("memit-csk", [r], {**PARAMS, "edit_token": "verb"})
    assert m.stack == []


def test_span_not_in_the_prompt_is_a_clear_error(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0].model_copy(update={"meta": {"object": "Berlin"}})
    with pytest.raises(DatasetRecordError, match="object 'Berlin' does not occur"):
        m.edit("memit-csk", [r], {**PARAMS, "edit_token": "object"})
    assert m.stack == []
