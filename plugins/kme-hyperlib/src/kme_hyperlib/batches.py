"""Token batches and losses for training and applying trained editors.

Every trained editor optimises the same two quantities (survey Eq. 17-18): the **edit loss**,
the negative log-likelihood of the new object's tokens after the prompt (prompt tokens are
not scored), and the **locality loss**, the KL divergence from the unedited model's
next-token distributions to the edited model's on prompts unrelated to the edit. This module
turns :class:`kme.EditRequest` objects into padded batches for both, computes the two losses,
and samples training steps from a dataset's train split, resumably.

* :func:`lm_batch` — ``(prompt, target)`` pairs → ``input_ids``, ``attention_mask``,
  ``labels`` (``-100`` except on the target's tokens) and a ``group`` per row;
* :func:`edit_pairs` / :func:`true_pairs` — a request's phrasings with its new / old object;
* :func:`masked_nll` / :func:`kl_locality` — the two losses, per group or overall;
* :class:`EditSampler` — seeded training steps (edits, their outer phrasings, unrelated
  locality prompts from other subjects), with ``state_dict`` for resume.
"""

from __future__ import annotations

import hashlib
import json
import random
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

import kme
from kme import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["LMBatch", "lm_batch", "edit_pairs", "true_pairs", "masked_nll", "kl_locality", "group_mean",
           "target_correct", "EditStep", "EditSampler", "Phrasing", "LocalitySource", "requests_digest"]

Phrasing = Literal["prompt", "paraphrase", "both"]
LocalitySource = Literal["random", "same_relation", "neighbours", "mixed"]


@dataclass
class LMBatch:
    """A right-padded batch of prompt + target sequences.

    ``labels[b, t]`` is the token at ``t`` where ``t`` is a target position, ``-100``
    elsewhere (HF's convention: position ``t-1``'s logits predict it); ``group[b]`` says which
    edit row ``b`` belongs to (all zero when there is one)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    group: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> "LMBatch":
        return LMBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device),
                       self.group.to(device))

    def forward(self, net: torch.nn.Module) -> torch.Tensor:
        """``net``'s logits on this batch (float32)."""
        return net(input_ids=self.input_ids, attention_mask=self.attention_mask).logits.float()

    @staticmethod
    def cat(batches: Sequence["LMBatch"], pad_id: int) -> "LMBatch":
        """Stack batches (re-padded to the longest) into one."""
        width = max(b.input_ids.shape[1] for b in batches)

        def pad(t: torch.Tensor, value: int) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

        return LMBatch(torch.cat([pad(b.input_ids, pad_id) for b in batches]),
                       torch.cat([pad(b.attention_mask, 0) for b in batches]),
                       torch.cat([pad(b.labels, -100) for b in batches]),
                       torch.cat([b.group for b in batches]))


_TOKENS: "weakref.WeakKeyDictionary[Any, dict[tuple[str, str], tuple[list[int], list[int]]]]" = \
    weakref.WeakKeyDictionary()


def _tokens(model: "EditedModel", prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Prompt and target token ids, memoised per tokenizer (training revisits the same
    pairs every epoch)."""
    tok = model.tokenizer
    try:
        memo = _TOKENS.setdefault(tok, {})
    except TypeError:  # pragma: no cover - a tokenizer that cannot be weakly referenced
        memo = {}
    key = (prompt, target)
    if key not in memo:
        if len(memo) > 200_000:
            memo.clear()
        memo[key] = (tok(prompt, add_special_tokens=True)["input_ids"],
                     model.target_ids(prompt, target) if target else [])
    return memo[key]


def lm_batch(model: "EditedModel", pairs: Sequence[tuple[str, str]], groups: Sequence[int] | None = None,
             *, device: torch.device | str | None = None) -> LMBatch:
    """Tokenise ``(prompt, target)`` pairs the way :meth:`kme.EditedModel.score` does (the
    prompt with special tokens, then the target joined by :func:`kme.join_target`) and pad
    them on the right; labels cover the target tokens only."""
    if not pairs:
        raise ValueError("lm_batch needs at least one (prompt, target) pair")
    tok = model.tokenizer
    seqs, spans = [], []
    for prompt, target in pairs:
        p_ids, t_ids = _tokens(model, prompt, target)
        seqs.append(p_ids + t_ids)
        spans.append((len(p_ids), len(p_ids) + len(t_ids)))
    dev = device if device is not None else model.device
    ids, mask = kme.pad_sequences(seqs, tok.pad_token_id, dev)
    labels = torch.full(ids.shape, -100, dtype=torch.long, device=ids.device)
    for i, (a, b) in enumerate(spans):
        labels[i, a:b] = ids[i, a:b]
    g = torch.tensor(list(groups) if groups is not None else [0] * len(pairs), dtype=torch.long,
                     device=ids.device)
    if len(g) != len(pairs):
        raise ValueError(f"{len(pairs)} pairs but {len(g)} group indices")
    return LMBatch(ids, mask, labels, g)


def edit_pairs(r: "EditRequest", phrasing: Phrasing = "prompt") -> list[tuple[str, str]]:
    """The request's phrasings with its new object: the prompt, its paraphrases or both
    (paraphrases fall back to the prompt when the request has none)."""
    para = [(p, r.target_new) for p in r.paraphrase_prompts]
    if phrasing == "prompt":
        return [(r.text, r.target_new)]
    if phrasing == "paraphrase":
        return para or [(r.text, r.target_new)]
    return [(r.text, r.target_new), *para]


def true_pairs(r: "EditRequest") -> list[tuple[str, str]]:
    """The request's prompt with its old (true) object: an unrelated edit's locality probe."""
    if not r.target_true:
        return []
    return [(r.text, r.target_true)]


def _shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lg = logits[:, :-1]
    lb = labels[:, 1:]
    mask = lb != -100
    safe = lb.masked_fill(~mask, 0)
    logp = lg.float().log_softmax(-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp, mask, safe


def group_mean(values: torch.Tensor, mask: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Per-group mean of ``values[b, t]`` over the positions where ``mask`` is set:
    ``[n_groups]`` (0 for a group with no position)."""
    v = (values * mask).sum(-1)
    n = mask.float().sum(-1)
    sums = torch.zeros(n_groups, dtype=v.dtype, device=v.device).index_add(0, group, v)
    counts = torch.zeros(n_groups, dtype=v.dtype, device=v.device).index_add(0, group, n)
    return sums / counts.clamp_min(1)


def masked_nll(logits: torch.Tensor, batch: LMBatch, *, n_groups: int | None = None) -> torch.Tensor:
    """Mean negative log-likelihood of the labelled tokens: a scalar over the whole batch,
    or ``[n_groups]`` token means per group (each edit's own mean, as when edits are trained
    one at a time)."""
    logp, mask, _ = _shifted(logits, batch.labels)
    if n_groups is None:
        return -(logp * mask).sum() / mask.sum().clamp_min(1)
    return -group_mean(logp, mask, batch.group, n_groups)


def target_correct(logits: torch.Tensor, batch: LMBatch) -> torch.Tensor:
    """Per row: whether every labelled token is the argmax (teacher-forced exact match)."""
    lg = logits[:, :-1]
    lb = batch.labels[:, 1:]
    mask = lb != -100
    ok = (lg.argmax(-1) == lb) | ~mask
    return ok.all(-1) & mask.any(-1)


def kl_locality(pre_logits: torch.Tensor, post_logits: torch.Tensor, batch: LMBatch, *,
                positions: Literal["all", "target"] = "all", n_groups: int | None = None) -> torch.Tensor:
    """``KL(pre ‖ post)`` of the next-token distributions, averaged over the batch's
    non-padding positions (``positions="all"``, MEND's released loss) or over the positions
    predicting the labelled tokens (``"target"``); ``pre`` is the unedited model's (detached)."""
    pre = pre_logits.detach().float().log_softmax(-1)
    post = post_logits.float().log_softmax(-1)
    kl = (pre.exp() * (pre - post)).sum(-1)  # [b, s]
    if positions == "all":
        mask = batch.attention_mask.bool()
    else:
        mask = torch.zeros_like(batch.attention_mask, dtype=torch.bool)
        mask[:, :-1] = batch.labels[:, 1:] != -100
    if n_groups is None:
        return (kl * mask).sum() / mask.sum().clamp_min(1)
    return group_mean(kl, mask, batch.group, n_groups)


def requests_digest(requests: Sequence["EditRequest"]) -> str:
    """A short hash of the requests' ids, prompts and objects: a saved training state records
    it, so that resuming on other training data is refused."""
    h = hashlib.sha256()
    for r in requests:
        h.update(json.dumps([str(r.case_id), r.text, r.target_new, r.target_true, r.paraphrase_prompts]).encode())
    return f"{len(requests)}:{h.hexdigest()[:16]}"


@dataclass
class EditStep:
    """One training step's data: ``edits[g]`` is edited alone (group ``g``); ``inner`` is what
    the edit is computed from, ``outer`` where its success is measured, ``loc`` the
    unrelated prompts whose predictions it must leave alone (each row in its edit's group)."""

    edits: list["EditRequest"]
    inner: LMBatch
    outer: LMBatch
    loc: LMBatch
    loc_pairs: list[tuple[str, str]] = field(default_factory=list)


class EditSampler:
    """Seeded training steps from a train split, resumable.

    Requests are visited in shuffled epochs (every request edited once per epoch). Each edit's
    locality prompts are the prompts of other requests — about other subjects, so unrelated to
    the edit — with their true objects (MEND's "loc" batch; the fact world's stand-in for
    its Natural Questions). ``locality``: ``"random"`` draws them from all other requests;
    ``"same_relation"`` from requests of the edit's relation (the same phrasing about another
    subject); ``"neighbours"`` from those whose true object is also the edit's old object
    (CounterFact's neighbourhood, built from the train split; falls back to the relation);
    ``"mixed"`` alternates random and neighbours.
    ``inner``/``outer`` phrasings: ``"prompt"``, ``"paraphrase"`` (falls back to the prompt)
    or ``"both"``."""

    def __init__(self, requests: Sequence["EditRequest"], *, seed: int = 0, loc_per_edit: int = 4,
                 inner: Phrasing = "prompt", outer: Phrasing = "paraphrase", locality: LocalitySource = "random",
                 where: str = "training requests"):
        reqs = [r for r in requests if r.target_new]
        if len(reqs) < 2:
            raise ConfigError(f"{len(reqs)} usable training request(s); training needs at least 2 (an edit and "
                              "an unrelated request for its locality loss)", where=where,
                              hint="use a dataset with a train split (e.g. factworld)")
        if not any(r.target_true for r in reqs):
            raise ConfigError("no training request has a true object (target_true): the locality loss has no "
                              "unrelated facts to keep", where=where)
        self.requests = reqs
        self.loc_per_edit = loc_per_edit
        self.inner = inner
        self.outer = outer
        self.locality = locality
        self.rng = random.Random(seed)
        self._order: list[int] = []
        self._pos = 0
        self.epoch = 0
        self._with_true = [i for i, r in enumerate(reqs) if r.target_true]
        self._by_relation: dict[str, list[int]] = {}
        self._by_object: dict[tuple[str, str], list[int]] = {}
        for i in self._with_true:
            rel = reqs[i].relation or reqs[i].prompt
            self._by_relation.setdefault(rel, []).append(i)
            self._by_object.setdefault((rel, reqs[i].target_true or ""), []).append(i)

    def _next_index(self) -> int:
        if self._pos >= len(self._order):
            self._order = list(range(len(self.requests)))
            self.rng.shuffle(self._order)
            self._pos = 0
            self.epoch += 1
        i = self._order[self._pos]
        self._pos += 1
        return i

    def _loc_for(self, r: "EditRequest") -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        tries = 0
        rel = r.relation or r.prompt
        same = self._by_relation.get(rel, [])
        neighbours = self._by_object.get((rel, r.target_true or ""), [])
        if len(neighbours) < 2:
            neighbours = same
        while len(out) < self.loc_per_edit and tries < 20 * self.loc_per_edit:
            tries += 1
            if self.locality == "same_relation":
                pool = same
            elif self.locality == "neighbours" or (self.locality == "mixed" and len(out) % 2 == 1):
                pool = neighbours
            else:
                pool = self._with_true
            if len(pool) < 2:
                pool = self._with_true
            other = self.requests[self.rng.choice(pool)]
            if other.subject == r.subject or r.subject in other.text:
                continue
            out += true_pairs(other)
        return out[: self.loc_per_edit]

    def sample(self, model: "EditedModel", n_edits: int) -> EditStep:
        """The next ``n_edits`` edits with their batches."""
        edits = [self.requests[self._next_index()] for _ in range(n_edits)]
        inner, outer, loc = [], [], []
        gi, go, gl = [], [], []
        for g, r in enumerate(edits):
            ip = edit_pairs(r, self.inner)
            op = edit_pairs(r, self.outer)
            lp = self._loc_for(r)
            inner += ip
            outer += op
            loc += lp
            gi += [g] * len(ip)
            go += [g] * len(op)
            gl += [g] * len(lp)
        if not loc:  # every other request is about the same subject: fall back to any true fact
            loc = [p for r in self.requests for p in true_pairs(r)][:1]
            gl = [0]
        return EditStep(edits, lm_batch(model, inner, gi), lm_batch(model, outer, go), lm_batch(model, loc, gl),
                        loc)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "order": list(self._order), "pos": self._pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self._order = list(state["order"])
        self._pos = int(state["pos"])
        self.epoch = int(state["epoch"])
