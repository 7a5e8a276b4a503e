"""kme's data model, in the survey's vocabulary.

An edit ``e = (s, r, o -> o*)`` is an :class:`EditRequest`: a relation prompt with a subject
slot, the subject ``s``, the new object ``o*`` (``target_new``) and optionally the old one
``o`` (``target_true``). Its evaluation probes travel with it: in-scope inputs ``X_e``
(``paraphrase_prompts``), out-of-scope inputs ``O_e`` (``neighborhood``), portability and
multi-hop questions, generation prompts. Dataset plugins turn their native records into these
objects; everything downstream sees only them. Everything here serialises to JSON.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Probe",
    "PortabilityQuestion",
    "EditRequest",
    "Location",
    "MetricValue",
    "EditRecord",
    "MemoryHit",
    "RunSummary",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Longest text a request may carry (characters). Far above any model's context, and far
#: below what would exhaust memory when tokenized (a 50 MB record field).
MAX_TEXT_CHARS = 1_000_000


class _TextModel(_Model):
    """A record of texts for the model: a string longer than :data:`MAX_TEXT_CHARS` is refused
    when the record is read, before anything tokenizes it."""

    @model_validator(mode="before")
    @classmethod
    def _bounded_texts(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for k, v in data.items():
                for x in (v if isinstance(v, list) else [v]):
                    if isinstance(x, str) and len(x) > MAX_TEXT_CHARS:
                        raise ValueError(f"{k} is {len(x):,} characters long; texts are limited to "
                                         f"{MAX_TEXT_CHARS:,} (no model's context holds more)")
        return data


class Probe(_TextModel):
    """A prompt with the answer it should produce (e.g. a neighbourhood prompt and its
    unchanged object)."""

    prompt: str
    target: str

    @field_validator("prompt", "target")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty string")
        return v


class PortabilityQuestion(_TextModel):
    """A question whose answer should follow from the edit (portability, multi-hop).

    ``target_new`` is the answer expected after the edit, ``target_true`` the one before it.
    ``aliases`` are further acceptable answers after the edit.
    """

    prompt: str
    target_new: str
    target_true: str | None = None
    kind: Literal["portability", "multihop", "reverse", "one-hop", "subject-alias"] = "portability"
    aliases: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class EditRequest(_TextModel):
    """One edit ``e = (s, r, o -> o*)`` with its evaluation probes.

    ``prompt`` is the relation prompt ``r`` with a ``{}`` slot for the subject
    (``"The capital of {} is"``), or plain text that contains the subject. ``choices``, when
    given, makes the target categorical: ``target_new`` must be one of them (classification
    datasets such as FEVER or SCOTUS).
    """

    case_id: str | int
    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    relation: str | None = None
    paraphrase_prompts: list[str] = Field(default_factory=list)
    neighborhood: list[Probe] = Field(default_factory=list)
    portability: list[PortabilityQuestion] = Field(default_factory=list)
    generation_prompts: list[str] = Field(default_factory=list)
    reference_texts: list[str] = Field(default_factory=list)
    choices: list[str] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("target_new")
    @classmethod
    def _target_non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("target_new must be a non-empty string")
        return v

    @model_validator(mode="after")
    def _subject_in_prompt(self) -> "EditRequest":
        if not self.subject.strip():
            raise ValueError("subject must be a non-empty string")
        if "{}" in self.prompt:
            if self.prompt.count("{}") != 1:
                raise ValueError(f"prompt {self.prompt!r} must contain exactly one '{{}}' subject slot")
        elif self.subject not in self.prompt:
            raise ValueError(
                f"subject {self.subject!r} does not occur in prompt {self.prompt!r}; "
                "write the prompt with a '{}' slot for the subject or include the subject verbatim"
            )
        if self.choices is not None and self.target_new not in self.choices:
            raise ValueError(f"target_new {self.target_new!r} is not one of choices {self.choices!r}")
        return self

    @property
    def text(self) -> str:
        """The edit prompt with the subject filled in."""
        return self.prompt.replace("{}", self.subject) if "{}" in self.prompt else self.prompt

    @property
    def template(self) -> str:
        """The prompt with a ``{}`` subject slot (derived when the prompt is plain text)."""
        if "{}" in self.prompt:
            return self.prompt
        i = self.prompt.index(self.subject)
        return self.prompt[:i] + "{}" + self.prompt[i + len(self.subject) :]


class Location(_Model):
    """Where a fact lives, as a locator reports it.

    ``layers`` are block indices ranked best first; ``modules`` qualified module names;
    ``neurons`` maps a module name to intermediate-neuron indices; ``scores`` and
    ``artifacts`` (paths of files such as heat maps) are free-form per locator.
    """

    locator: str
    layers: list[int] = Field(default_factory=list)
    modules: list[str] = Field(default_factory=list)
    neurons: dict[str, list[int]] = Field(default_factory=dict)
    scores: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)


class MetricValue(_Model):
    """An aggregated metric: the edited model's value beside the unedited baseline.

    ``scoring`` names how an answer was judged: ``probability-comparison``,
    ``teacher-forced-token-accuracy``, ``greedy-exact-match``, ``top1``, ``agreement``,
    ``n-gram-entropy``, ... ``higher_is_better`` says how to read it.
    """

    name: str
    value: float | None
    baseline: float | None = None
    scoring: str
    n: int = 0
    higher_is_better: bool = True
    details: dict[str, Any] = Field(default_factory=dict)


class EditRecord(_Model):
    """One line of ``edits.jsonl``: one request's per-edit metric values after one batch."""

    case_id: str | int
    batch: int
    editors: list[str]
    metrics: dict[str, float | None] = Field(default_factory=dict)
    baseline: dict[str, float | None] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    location: dict[str, Any] | None = None
    error: str | None = None
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    """Per editor, in pipeline order: what it decided for this request's batch (its handle's
    ``meta``: layers and why, λ, statistics corpus and cache file, ...) and, under
    ``request``, for this request (steps taken, final loss, ...)."""


class MemoryHit(_Model):
    """What a memory editor contributes to one query at inference time.

    ``context`` is text placed before the query (demonstrations, retrieved facts, patches);
    hits of several memory editors are concatenated in editor order. ``score`` is the
    retrieval score, kept for reports. ``router``, when set, answers the query instead of
    the edited model (SERAC's counterfactual model): any object with ``score(prompts,
    targets)``, ``next_token_logprobs(prompts)`` and ``generate(prompts, max_new_tokens=...)``
    like :class:`kme.EditedModel`; it receives the prompt with the context placed before it.
    It is a live object, never serialised.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    prompt_index: int
    source: str
    context: str = ""
    score: float | None = None
    router: Any = Field(default=None, exclude=True)


class RunSummary(_Model):
    """The public shape of ``summary.json`` (see docs/summary-format.md)."""

    kme_summary_version: int = 1
    status: Literal["complete", "partial"]
    metrics: dict[str, dict[str, Any]]
    config: dict[str, Any]
    versions: dict[str, str]
    timings: dict[str, float]
    counts: dict[str, int]
    failures: list[dict[str, Any]] = Field(default_factory=list)
