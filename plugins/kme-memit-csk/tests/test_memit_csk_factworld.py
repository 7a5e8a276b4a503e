"""On the fact-world model: the preset applies and an object or verb edit of a commonsense
statement makes the new object win (the statement's spans come from the dataset)."""

import pytest

import kme


@pytest.fixture(scope="module")
def factworld():
    try:
        return kme.load("factworld")
    except kme.KmeError as e:  # pragma: no cover - kme-factworld not installed
        pytest.skip(f"fact-world model unavailable: {e}")


def test_the_fact_world_preset_edits_the_subject_at_layer_0(factworld):
    ed = factworld.make_editor("memit-csk", {"stats_samples": 300, "progress": False})
    assert ed.resolution.preset == "memit-csk/factworld"
    assert (ed.params.edit_token, ed.params.layers) == ("subject", [0])


@pytest.mark.parametrize("span", ["object", "verb"])
def test_edits_a_commonsense_statement_at_the_span(factworld, span):
    m = factworld
    reqs = list(m.pm.datasets.get("factworld-commonsense")({"relations": ["river"], "limit": 2}).load())
    ed = m.make_editor("memit-csk", {"edit_token": span, "stats_samples": 300, "progress": False})
    assert ed.resolution is not None and ed.resolution.preset == "memit-csk/factworld"
    took = 0
    for r in reqs:
        h = m.edit(ed, [r])
        assert h.meta["layers"] == [0] and h.meta["edit_spans"] == [r.meta[span]]  # the preset's layer
        new, old = m.score([r.text, r.text], [r.target_new, r.target_true])
        took += new.logprob > old.logprob
        m.undo()
    assert took == 2 and m.stack == []
