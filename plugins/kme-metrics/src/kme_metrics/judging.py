"""How an answer is judged right: the scoring modes shared by the accuracy-type metrics.

Codebases disagree on what "the model answers y" means, so kme names the mode with every
value:

- ``argmax`` (``teacher-forced-exact-match``): with the target fed in (teacher forcing), every
  target token is the model's top-1 prediction. This is the indicator of the survey's Eq. 3
  and is equivalent to greedy decoding reproducing the target's tokens.
- ``token`` (``teacher-forced-token-accuracy``): the fraction of target tokens that are the
  top-1 prediction under teacher forcing (zsRE in ROME/MEMIT, EasyEdit's reliability,
  generalisation and portability). A value in [0, 1] per probe, not an indicator.
- ``exact`` (``greedy-exact-match``): the greedy continuation begins with the answer text
  followed by a word boundary (end of text, whitespace or punctuation); whitespace is
  normalised, case is kept. Generation runs for as many tokens as the longest answer.

Categorical targets (``EditRequest.choices``: FEVER, SCOTUS, ...) are judged the same way in
every mode: the label is the choice with the highest summed log-probability, and a tie with
another choice counts as wrong.

With several acceptable answers (aliases), a probe scores the best of them. Every probe of a
call goes through one batched ``model.score`` call (plus one ``model.generate`` call in
``exact`` mode).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["Question", "ScoringMode", "SCORING_LABELS", "judge", "exact_match"]

ScoringMode = Literal["argmax", "token", "exact"]

SCORING_LABELS: dict[str, str] = {
    "argmax": "teacher-forced-exact-match",
    "token": "teacher-forced-token-accuracy",
    "exact": "greedy-exact-match",
}

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Question:
    """A prompt and the answers that count as right. ``choices`` makes it categorical (then
    ``answers[0]`` must be one of them)."""

    prompt: str
    answers: tuple[str, ...]
    choices: tuple[str, ...] | None = field(default=None)


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def exact_match(generated: str, answer: str) -> bool:
    """Does the continuation ``generated`` state ``answer`` (and not a longer word)?"""
    g, a = _norm(generated), _norm(answer)
    if not a or not g.startswith(a):
        return False
    rest = g[len(a):]
    return rest == "" or not (rest[0].isalnum() or rest[0] == "_")


def judge(model: "EditedModel", questions: Sequence[Question], mode: ScoringMode, *,
          batch_size: int = 64) -> list[float]:
    """Score every question in ``mode``; one value in [0, 1] per question."""
    if mode not in SCORING_LABELS:
        raise ValueError(f"unknown scoring mode {mode!r}; expected one of {sorted(SCORING_LABELS)}")
    out = [0.0] * len(questions)
    prompts: list[str] = []
    targets: list[str] = []
    owners: list[tuple[int, int]] = []  # (question index, answer/choice index)
    generate_idx: list[int] = []
    for i, q in enumerate(questions):
        if q.choices:
            for j, c in enumerate(q.choices):
                prompts.append(q.prompt)
                targets.append(c)
                owners.append((i, j))
        elif mode == "exact":
            generate_idx.append(i)
        else:
            for j, a in enumerate(q.answers):
                prompts.append(q.prompt)
                targets.append(a)
                owners.append((i, j))
    if prompts:
        scores = model.score(prompts, targets, batch_size=batch_size)
        by_q: dict[int, dict[int, object]] = {}
        for (i, j), s in zip(owners, scores):
            by_q.setdefault(i, {})[j] = s
        for i, per in by_q.items():
            q = questions[i]
            if q.choices:
                out[i] = _choice_correct(q, {j: s.logprob for j, s in per.items()})  # type: ignore[attr-defined]
            elif mode == "argmax":
                out[i] = float(any(s.all_correct for s in per.values()))  # type: ignore[attr-defined]
            else:
                out[i] = max(s.token_accuracy for s in per.values())  # type: ignore[attr-defined]
    if generate_idx:
        n = max(len(model.target_ids(questions[i].prompt, a)) for i in generate_idx for a in questions[i].answers)
        texts = model.generate([questions[i].prompt for i in generate_idx], max_new_tokens=max(1, n),
                               batch_size=batch_size)
        for i, text in zip(generate_idx, texts):
            out[i] = float(any(exact_match(text, a) for a in questions[i].answers))
    return out


def _choice_correct(q: Question, logprobs: dict[int, float]) -> float:
    """1.0 when the right label's log-probability is strictly above every other choice's."""
    assert q.choices is not None
    right = q.answers[0]
    mine = [lp for j, lp in logprobs.items() if q.choices[j] == right]
    others = [lp for j, lp in logprobs.items() if q.choices[j] != right]
    if not mine:
        raise ValueError(f"answer {right!r} is not one of the choices {list(q.choices)!r}")
    return float(not others or mine[0] > max(others))
