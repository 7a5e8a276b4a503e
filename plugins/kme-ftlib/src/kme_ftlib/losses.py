"""Target-token losses of the fine-tuning editors.

Both objectives read the same padded ``prompt + target`` batch (right padding keeps every
token at its unpadded position, so the logits at the last prompt token do not depend on
whether the target follows):

* ``prompt_last`` -- FT-L as ROME's and EasyEdit's released code computes it: the
  distribution *at the last prompt token* is scored against every token of the target, and
  the negative log-likelihoods are averaged over the target's tokens (for a one-token
  object this is the usual next-token loss; a longer object becomes a bag of tokens all
  expected at the same position);
* ``target_new`` -- FT-M (EasyEdit's ``objective_optimization: target_new``): the ordinary
  teacher-forced autoregressive loss, masked to the target's tokens only (the prompt's own
  tokens are not trained on).

Each request's loss is its mean over its target tokens; a batch's loss is the mean over its
requests, as in the released code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import kme

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel

__all__ = ["Objective", "EditBatch", "encode_batch", "prompt_last_nll", "target_tokens_nll", "LOSSES", "loss_for"]

Objective = Literal["prompt_last", "target_new"]


@dataclass
class EditBatch:
    """Padded ``prompt + target`` token ids of some requests and where each target sits."""

    ids: "torch.Tensor"  # [n, width]
    mask: "torch.Tensor"  # [n, width]
    prompt_lens: list[int]
    targets: list[list[int]]

    def __len__(self) -> int:
        return len(self.prompt_lens)

    def rows(self, index: Sequence[int]) -> "EditBatch":
        """The sub-batch of rows ``index`` (trimmed to its own longest row)."""
        width = max(self.prompt_lens[i] + len(self.targets[i]) for i in index)
        idx = list(index)
        return EditBatch(self.ids[idx, :width], self.mask[idx, :width], [self.prompt_lens[i] for i in idx],
                         [self.targets[i] for i in idx])


def encode_batch(model: "EditedModel", prompts: Sequence[str], targets: Sequence[str]) -> EditBatch:
    """Tokenise ``prompt`` and ``target`` the way :meth:`kme.EditedModel.score` does (the
    prompt with the tokenizer's special tokens, the target as :func:`kme.join_target`
    continues it), so training and evaluation see the same tokens."""
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    tok = model.tokenizer
    seqs, plens, tids = [], [], []
    for p, t in zip(prompts, targets):
        pid = list(tok(p, add_special_tokens=True)["input_ids"])
        tid = list(model.target_ids(p, t))
        if not pid or not tid:
            raise kme.KmeError(f"prompt {p!r} or its target {t!r} encodes to no tokens",
                               hint="give a non-empty prompt and target")
        seqs.append(pid + tid)
        plens.append(len(pid))
        tids.append(tid)
    ids, mask = kme.pad_sequences(seqs, tok.pad_token_id, model.device)
    return EditBatch(ids, mask, plens, tids)


def prompt_last_nll(logits: "torch.Tensor", batch: EditBatch) -> "torch.Tensor":
    """Mean NLL of every target token under the distribution at the last prompt token (FT-L)."""
    import torch

    losses = []
    for r, (plen, tid) in enumerate(zip(batch.prompt_lens, batch.targets)):
        logp = torch.log_softmax(logits[r, plen - 1].float(), dim=-1)
        losses.append(-logp[torch.as_tensor(tid, device=logits.device)].mean())
    return torch.stack(losses).mean()


def target_tokens_nll(logits: "torch.Tensor", batch: EditBatch) -> "torch.Tensor":
    """Teacher-forced mean NLL of the target tokens only, each given the prompt and the
    target tokens before it (FT-M)."""
    import torch

    losses = []
    for r, (plen, tid) in enumerate(zip(batch.prompt_lens, batch.targets)):
        pos = torch.arange(plen - 1, plen - 1 + len(tid), device=logits.device)
        logp = torch.log_softmax(logits[r, pos].float(), dim=-1)
        losses.append(-logp.gather(-1, torch.as_tensor(tid, device=logits.device)[:, None]).mean())
    return torch.stack(losses).mean()


LOSSES: dict[str, Callable[["torch.Tensor", EditBatch], "torch.Tensor"]] = {
    "prompt_last": prompt_last_nll,
    "target_new": target_tokens_nll,
}


def loss_for(objective: str) -> Callable[["torch.Tensor", EditBatch], "torch.Tensor"]:
    """The loss function of ``objective`` (``prompt_last`` or ``target_new``)."""
    try:
        return LOSSES[objective]
    except KeyError:
        raise kme.ConfigError(f"unknown objective {objective!r}", where="objective",
                              hint=f"one of: {', '.join(LOSSES)}") from None
