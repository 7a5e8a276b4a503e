"""Turning source text into kme prompts: a ``{}`` subject slot where the subject occurs,
the "whole input is the subject" rule where a source has none, LAMA/ParaRel templates and
T5-style sentinel cloze spans."""

from __future__ import annotations

import re

__all__ = ["escape_braces", "slot_subject", "subject_slot_or_skip", "whole_input", "slot_or_whole_input", "lama_prompt",
           "sentinel_span", "cloze_left"]


def escape_braces(text: str) -> str:
    """A literal ``{}`` in source text would read as a subject slot; write it as ``{ }``."""
    return text.replace("{}", "{ }")


def slot_subject(text: str, subject: str) -> tuple[str, str] | None:
    """``(prompt_with_slot, subject_as_written)`` with the first occurrence of ``subject`` in
    ``text`` replaced by ``{}``; case-insensitive when the exact spelling is absent (the
    subject is then taken as written in the text). ``None`` when the subject does not occur."""
    text = escape_braces(text)
    subject = escape_braces(subject).strip()
    if not subject:
        return None
    i = text.find(subject)
    if i < 0:
        i = text.lower().find(subject.lower())
        if i < 0:
            return None
        subject = text[i:i + len(subject)]
    return text[:i] + "{}" + text[i + len(subject):], subject


def whole_input(template: str, text: str) -> tuple[str, str]:
    """Sources without a natural subject (a claim, a biography, a court opinion, a question):
    the input text itself is the subject, placed in ``template`` at its ``{}`` slot. Editors
    that key on the subject's last token then use the input's last token."""
    return template, escape_braces(text).strip()


def slot_or_whole_input(text: str, subject: str | None) -> tuple[str, str]:
    """:func:`slot_subject` when ``subject`` is given and occurs in ``text``, else the whole
    text is the subject (:func:`whole_input` with template ``"{}"``)."""
    got = slot_subject(text, subject) if subject is not None else None
    return got if got is not None else whole_input("{}", text)


_X, _Y = "[X]", "[Y]"


def lama_prompt(template: str, subject: str) -> str | None:
    """A LAMA/ParaRel template (``"[X] was born in [Y] ."``) as a left-to-right prompt with a
    subject slot: the text before ``[Y]`` with ``[X]`` -> ``{}``. ``None`` when ``[Y]`` comes
    before ``[X]`` (a causal LM cannot be asked that way) or a slot is missing."""
    if template.count(_X) != 1 or template.count(_Y) != 1:
        return None
    x, y = template.index(_X), template.index(_Y)
    if y < x:
        return None
    left = escape_braces(template[:y]).rstrip()
    left = left.replace(_X, "{}")
    if left.strip() == "{}":
        return None  # "[X] [Y]" leaves no relation words to ask with
    return left


_SENTINEL = re.compile(r"<extra_id_\d+>")


def sentinel_span(target: str) -> str:
    """``"<extra_id_0> group in the US <extra_id_1>"`` -> ``"group in the US"``."""
    return _SENTINEL.sub(" ", target).strip()


def cloze_left(masked: str, mask: str = "<extra_id_0>") -> tuple[str, str] | None:
    """Split a masked sentence at its mask: ``(left_context, right_context)``; ``None`` when
    the mask is absent or occurs more than once."""
    if masked.count(mask) != 1:
        return None
    left, right = masked.split(mask)
    return left.rstrip(), right


def subject_slot_or_skip(text: str, subject: str, field: str) -> tuple[str, str]:
    """:func:`slot_subject`, or skip the record (see ``on_unusable``) when the subject is not in the text."""
    from kme_datasets.fields import SkipRecord

    got = slot_subject(text, subject)
    if got is None:
        raise SkipRecord(f"subject {subject!r} does not occur in {field} {text!r}"[:300], field)
    return got
