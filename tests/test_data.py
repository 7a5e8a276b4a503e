"""The data model: validation and JSON round trips."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kme import EditRequest, PortabilityQuestion, Probe


def test_edit_request_round_trips_through_json():
    r = EditRequest(case_id="a1", prompt="The mother tongue of {} is", subject="Danielle Darrieux",
                    target_new="English", target_true="French", paraphrase_prompts=["Danielle Darrieux spoke"],
                    neighborhood=[Probe(prompt="The mother tongue of Léon Blum is", target="French")],
                    portability=[PortabilityQuestion(prompt="Danielle Darrieux's language family is",
                                                     target_new="Germanic", kind="multihop")])
    again = EditRequest.model_validate_json(r.model_dump_json())
    assert again == r
    assert r.text == "The mother tongue of Danielle Darrieux is"
    assert r.template == "The mother tongue of {} is"


def test_plain_text_prompt_must_contain_the_subject():
    r = EditRequest(case_id=1, prompt="Who leads Acme?", subject="Acme", target_new="Ann")
    assert r.text == "Who leads Acme?" and r.template == "Who leads {}?"
    with pytest.raises(ValidationError, match="does not occur in prompt"):
        EditRequest(case_id=1, prompt="Who leads it?", subject="Acme", target_new="Ann")


@pytest.mark.parametrize("kwargs,msg", [
    ({"target_new": ""}, "target_new must be a non-empty string"),
    ({"subject": " "}, "subject must be a non-empty string"),
    ({"prompt": "{} and {}"}, "exactly one"),
    ({"choices": ["SUPPORTS", "REFUTES"]}, "is not one of choices"),
    ({"unknown": 1}, "Extra inputs are not permitted"),
])
def test_bad_requests_are_refused(kwargs, msg):
    base = {"case_id": 0, "prompt": "{} plays", "subject": "Bo", "target_new": "chess"}
    with pytest.raises(ValidationError, match=msg):
        EditRequest(**{**base, **kwargs})


def test_categorical_target():
    r = EditRequest(case_id=0, prompt="Claim: {} is a city. Verdict:", subject="Paris", target_new="SUPPORTS",
                    choices=["SUPPORTS", "REFUTES"])
    assert r.choices == ["SUPPORTS", "REFUTES"]
