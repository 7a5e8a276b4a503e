"""Spans of a statement other than the subject: the verb and the object.

Commonsense statements ("People in Osterby drink from the river") are edited and traced at
the subject, the verb or the object (Gupta et al., 2023). A request names its verb and
object in ``EditRequest.meta`` (``meta["verb"]``, ``meta["object"]``: text that occurs
verbatim in the prompt with the subject filled in). :func:`anchor_request` returns the
request re-anchored on the chosen span -- that span as ``subject``, the prompt with a
``{}`` slot there -- so that every tool that reads "the subject's last token" (keys, target
vectors, causal tracing's corruption) reads the chosen span instead, as the paper's
released code does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from kme import DatasetRecordError

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditRequest

__all__ = ["Span", "SPANS", "span_text", "span_offset", "anchor_request"]

Span = Literal["subject", "verb", "object"]
SPANS: tuple[str, ...] = ("subject", "verb", "object")


def span_text(request: "EditRequest", span: str) -> str:
    """The text of ``span`` in ``request`` (``subject``, or ``meta["verb"]``/``meta["object"]``)."""
    if span not in SPANS:
        raise DatasetRecordError(f"unknown span {span!r}", hint=f"use one of {', '.join(SPANS)}")
    if span == "subject":
        return request.subject
    value = request.meta.get(span)
    if not isinstance(value, str) or not value.strip():
        raise DatasetRecordError(
            f"request {request.case_id!r} has no {span} span (meta[{span!r}] is {value!r})",
            where=f"request {request.case_id!r} meta.{span}",
            hint=f"give the request meta[{span!r}]: the {span}'s text as it occurs in the prompt, "
                 "or edit at another span")
    return value


def span_offset(text: str, value: str, span: str = "span") -> int:
    """Character offset of the last whole-word occurrence of ``value`` in ``text`` (a plain
    occurrence when no whole-word one exists); a clear error when absent."""
    hits = [m.start() for m in re.finditer(rf"(?<!\w){re.escape(value)}(?!\w)", text)]
    if hits:
        return hits[-1]
    i = text.rfind(value)
    if i < 0:
        raise DatasetRecordError(f"{span} {value!r} does not occur in {text!r}",
                                 hint=f"meta[{span!r}] must be text of the prompt with the subject filled in")
    return i


def anchor_request(request: "EditRequest", span: str) -> "EditRequest":
    """``request`` with ``span`` as its subject (the prompt's ``{}`` slot moved there); the
    request itself when ``span`` is ``subject``. The original subject is kept in
    ``meta["anchored_from"]``."""
    if span == "subject":
        span_text(request, span)  # validates the name
        return request
    value = span_text(request, span)
    text = request.text
    i = span_offset(text, value, span)
    if "{" in text or "}" in text:
        raise DatasetRecordError(f"prompt {text!r} contains braces; it cannot take a {span} slot",
                                 where=f"request {request.case_id!r} prompt")
    prompt = text[:i] + "{}" + text[i + len(value):]
    meta = {**request.meta, "anchored_from": request.subject, "anchored_span": span}
    return request.model_copy(update={"prompt": prompt, "subject": value, "meta": meta})
