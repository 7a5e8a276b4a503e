"""Edit requests as the teacher-forced token sequences KnowledgeEditor-style training and
editing read: the edit itself, its condition text, and the inputs each objective uses.

A causal LM has no decoder: an answer is scored at the positions that predict its tokens
after the prompt (as :meth:`kme.EditedModel.score` does), so the released seq2seq code's
"decoder target tokens" become those positions here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

import kme

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["CONDITION_FORMAT", "Seq", "Item", "encode_seq", "encode_item", "encode_conditions", "SeqBatch",
           "condition_text"]

CONDITION_FORMAT = "{old} >> {new} || {prompt}"
"""The edit as text for the condition encoder: the release's ``"{prediction} >> {alternative}
|| {input}"``, with the request's old object as the prediction."""

MAX_CONDITION_TOKENS = 64


@dataclass(frozen=True)
class Seq:
    """A prompt and the answer scored after it (token ids)."""

    prompt: tuple[int, ...]
    answer: tuple[int, ...]


@dataclass
class Item:
    """One request, encoded once: the edit, its old fact, and the inputs around it."""

    request: "EditRequest"
    condition: list[int]
    edit: Seq                                              # prompt -> new object
    old: Seq | None                                        # prompt -> old object (a locality input)
    views: list[Seq] = field(default_factory=list)         # paraphrases -> new object
    entailed: list[Seq] = field(default_factory=list)      # portability questions -> their new answers
    neighbours: list[Seq] = field(default_factory=list)    # neighbourhood prompts -> their own objects


def encode_seq(model: "EditedModel", prompt: str, answer: str) -> Seq:
    ids = model.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    ans = model.target_ids(prompt, answer)
    if not ans:
        raise kme.KmeError(f"answer {answer!r} of prompt {prompt!r} encodes to no tokens")
    return Seq(tuple(ids), tuple(ans))


def condition_text(request: "EditRequest") -> str:
    return CONDITION_FORMAT.format(old=request.target_true or "", new=request.target_new, prompt=request.text)


def encode_item(model: "EditedModel", request: "EditRequest", full: bool = True) -> Item:
    """Everything the objectives may use about ``request`` (empty lists where it has none);
    ``full=False``: only the condition and the edit (what an edit reads)."""
    cond = model.tokenizer(condition_text(request), add_special_tokens=True)["input_ids"][:MAX_CONDITION_TOKENS]
    if not full:
        return Item(request=request, condition=cond, edit=encode_seq(model, request.text, request.target_new),
                    old=None)
    return Item(
        request=request, condition=cond,
        edit=encode_seq(model, request.text, request.target_new),
        old=encode_seq(model, request.text, request.target_true) if request.target_true else None,
        views=[encode_seq(model, p, request.target_new) for p in request.paraphrase_prompts],
        entailed=[encode_seq(model, q.prompt, q.target_new) for q in request.portability if q.target_new],
        neighbours=[encode_seq(model, n.prompt, n.target) for n in request.neighborhood if n.target])


def encode_conditions(items: list[Item], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return kme.pad_sequences([it.condition for it in items], pad_id, device)


class SeqBatch:
    """Sequences padded into one forward pass, with the positions that predict each answer
    token: ``rows``/``positions`` index the logits, ``targets`` the answer tokens, ``owner``
    which sequence each token belongs to."""

    def __init__(self, seqs: list[Seq], pad_id: int, device: Any):
        self.seqs = seqs
        self.ids, self.mask = kme.pad_sequences([list(s.prompt + s.answer) for s in seqs], pad_id, device)
        rows, pos, tgt, owner = [], [], [], []
        for i, s in enumerate(seqs):
            n = len(s.prompt)
            for j, t in enumerate(s.answer):
                rows.append(i)
                pos.append(n - 1 + j)
                tgt.append(t)
                owner.append(i)
        self.rows = torch.tensor(rows, device=device, dtype=torch.long)
        self.positions = torch.tensor(pos, device=device, dtype=torch.long)
        self.targets = torch.tensor(tgt, device=device, dtype=torch.long)
        self.owner = torch.tensor(owner, device=device, dtype=torch.long)

    def token_mask(self, first: int, stop: int) -> torch.Tensor:
        """Which answer tokens belong to sequences ``first .. stop-1``."""
        return (self.owner >= first) & (self.owner < stop)
