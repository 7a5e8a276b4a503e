"""Token bookkeeping shared by every locate-and-edit method: where the subject's last token
sits in a prompt, how target tokens line up with the positions that predict them (padding
is the kernel's ``kme.pad_sequences``).

Everything tokenises exactly as :class:`kme.EditedModel` scores (prompt with special tokens,
target through ``model.target_ids``), so an optimised target vector is optimised for the same
token sequence the metrics later read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kme import KmeError

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["FactToken", "encode", "lookup_index", "subject_span", "subject_token_range", "Sequence_", "target_ids_of",
           "request_text"]

FactToken = Literal["subject_last", "last", "subject_first"]


def encode(model: "EditedModel", text: str) -> list[int]:
    """Token ids of a prompt, with the tokenizer's special tokens (as ``EditedModel`` scores)."""
    return list(model.tokenizer(text, add_special_tokens=True)["input_ids"])


def subject_span(text: str, subject: str, *, where: str = "prompt") -> tuple[int, int]:
    """Character span of the subject's last occurrence in ``text``; a clear error if absent."""
    if not subject:
        raise KmeError(f"empty subject for {where} {text!r}", hint="every request needs a non-empty subject")
    i = text.rfind(subject)
    if i < 0:
        raise KmeError(f"subject {subject!r} does not occur in {where} {text!r}",
                       hint="write the prompt with a '{}' slot for the subject or include the subject verbatim")
    return i, i + len(subject)


def _subject_tokens(model: "EditedModel", text: str, start: int, end: int) -> tuple[int, int, int]:
    """``(first, last, n_tokens)``: token indices covering characters ``[start, end)``.

    Uses the fast tokenizer's offsets (a leading space merged into the subject's first token
    counts as the subject's); falls back to tokenising the text up to the span's ends.
    """
    tok = model.tokenizer
    try:
        enc = tok(text, add_special_tokens=True, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        ids = enc["input_ids"]
    except (NotImplementedError, TypeError, KeyError):
        offsets = None
    if offsets is not None:
        hit = [i for i, (a, b) in enumerate(offsets) if b > a and b > start and a < end]
        if hit:
            return hit[0], hit[-1], len(ids)
    n = len(encode(model, text))
    last = min(len(encode(model, text[:end])) - 1, n - 1)
    first = min(len(encode(model, text[:start].rstrip(" "))), last)
    return first, last, n


def lookup_index(model: "EditedModel", text: str, subject: str, fact_token: FactToken = "subject_last",
                 *, subject_start: int | None = None) -> int:
    """Index of the token whose hidden state carries the fact (ROME's "subject_last": the
    subject's last token; "last": the prompt's last token; "subject_first")."""
    if fact_token == "last":
        return len(encode(model, text)) - 1
    if fact_token not in ("subject_last", "subject_first"):
        raise KmeError(f"unknown fact_token {fact_token!r}", hint="use subject_last, subject_first or last")
    if subject_start is None:
        start, end = subject_span(text, subject)
    else:
        start, end = subject_start, subject_start + len(subject)
        if text[start:end] != subject:
            raise KmeError(f"subject {subject!r} is not at offset {start} of {text!r}")
    first, last, _ = _subject_tokens(model, text, start, end)
    return last if fact_token == "subject_last" else first


def subject_token_range(model: "EditedModel", text: str, subject: str,
                        subject_start: int | None = None) -> tuple[int, int]:
    """Token indices ``[first, last]`` covered by the subject (for causal tracing's corruption)."""
    if subject_start is None:
        start, end = subject_span(text, subject)
    else:
        start, end = subject_start, subject_start + len(subject)
    first, last, _ = _subject_tokens(model, text, start, end)
    return first, last


def target_ids_of(model: "EditedModel", prompt: str, target: str, *, what: str = "target_new") -> list[int]:
    """Token ids of ``target`` continuing ``prompt`` (as the metrics score it); never empty."""
    if not target or not target.strip():
        raise KmeError(f"empty {what} for prompt {prompt!r}", hint=f"give every request a non-empty {what}")
    ids = list(model.target_ids(prompt, target))
    if not ids:
        raise KmeError(f"{what} {target!r} of prompt {prompt!r} encodes to no tokens")
    return ids


@dataclass
class Sequence_:
    """One token sequence of a batched forward: ``ids``, the position where a vector is
    read or injected (``index``), the owning request (``owner``) and, for target sequences,
    the positions that predict each target token and those tokens."""

    ids: list[int]
    index: int
    owner: int
    kind: str = "rewrite"
    loss_positions: tuple[int, ...] = ()
    loss_tokens: tuple[int, ...] = ()
    bare: bool = False


def request_text(request: "EditRequest") -> tuple[str, int]:
    """The edit prompt with the subject filled in and the subject's character offset."""
    if "{}" not in request.prompt and request.subject not in request.prompt:
        raise KmeError(f"request {request.case_id!r}: subject {request.subject!r} does not occur in prompt "
                       f"{request.prompt!r}",
                       hint="write the prompt with a '{}' slot for the subject or include the subject verbatim")
    template = request.template
    return request.text, template.index("{}")
