"""Random-prefix context templates (ROME §3.1, MEMIT §4.2).

The papers average keys and optimise target vectors over the edit prompt preceded by short
texts sampled from the model itself, so that the edit holds in varied contexts: ROME uses
10 prefixes of 5 tokens and 10 of 10 tokens, MEMIT 5 of 10 tokens, each started from "The",
"Therefore", "Because", "I" or "You" and sampled with top-k 5. Prefixes are sampled from the
unedited weights with a fixed seed, so they do not change as edits accumulate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kme_editlib.base import base_weights
from kme_editlib.hooks import eval_mode, run_unpadded

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["context_prefixes", "context_kinds", "STARTERS"]

STARTERS = ("The", "Therefore", "Because", "I", "You")
_CACHE: dict[tuple, list[str]] = {}


@torch.no_grad()
def _sample(model: "EditedModel", start: str, length: int, gen: torch.Generator, top_k: int) -> str:
    tok = model.tokenizer
    ids = list(tok(start, add_special_tokens=True)["input_ids"])
    n_special = len(ids) - len(tok(start, add_special_tokens=False)["input_ids"])
    while len(ids) - n_special < length:
        x = torch.tensor([ids], device=model.device)
        logits = run_unpadded(model, x).logits[0, -1].float()
        if model.tokenizer.eos_token_id is not None:
            logits[model.tokenizer.eos_token_id] = -float("inf")
        top = torch.topk(logits, min(top_k, logits.numel()))
        probs = torch.softmax(top.values, -1).cpu()
        ids.append(int(top.indices[int(torch.multinomial(probs, 1, generator=gen))]))
    return tok.decode(ids[n_special:], skip_special_tokens=True)


def context_prefixes(model: "EditedModel", spec: list[tuple[int, int]] | list[list[int]], *, seed: int = 0,
                     top_k: int = 5) -> list[str]:
    """``[""] + prefixes``: the bare prompt first, then ``count`` texts of ``length`` tokens
    for each ``(length, count)`` in ``spec``, each ending with ". " so that the prompt starts
    a new sentence. Cached per base model, spec and seed."""
    key = (model.base_fingerprint, tuple(tuple(x) for x in spec), seed, top_k)
    if key in _CACHE:
        return list(_CACHE[key])
    gen = torch.Generator().manual_seed(seed)
    out = [""]
    with eval_mode(model), base_weights(model):
        for length, count in spec:
            for i in range(count):
                text = _sample(model, STARTERS[i % len(STARTERS)], int(length), gen, top_k)
                text = " ".join(text.replace("{", " ").replace("}", " ").split())
                out.append(text + ". ")
    _CACHE[key] = out
    return list(out)


def context_kinds(spec: list[tuple[int, int]] | list[list[int]]) -> list[int]:
    """Sizes of the kinds of context :func:`context_prefixes` returns for ``spec``, in order:
    the bare prompt, then one group per ``(length, count)`` pair with ``count > 0``."""
    return [1] + [int(count) for _length, count in spec if int(count) > 0]
