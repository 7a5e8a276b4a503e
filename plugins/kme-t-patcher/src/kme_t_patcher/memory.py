"""The memory set D_M: FFN inputs on text unrelated to the edit, on which patches must stay
silent (T-Patcher's memory loss).

The paper keeps the inputs of training examples. An editor in kme sees only the requests it
applies, so the texts come from the ``memory_texts`` / ``memory_file`` params or, by default,
from the model itself: a seeded sample of short continuations of the beginning-of-text token,
i.e. text from the model's own distribution, which needs no corpus and no download.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kme import ConfigError, read_text

from kme_memlib.sampling import sample_ids

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["memory_texts", "ffn_inputs"]

_samples: "weakref.WeakKeyDictionary[Any, dict[tuple[int, int, int], list[str]]]" = weakref.WeakKeyDictionary()


def memory_texts(model: "EditedModel", texts: list[str] | None, path: str | None, samples: int,
                 sample_tokens: int, seed: int) -> list[str]:
    """The texts of the memory set, from params or sampled from the model (cached per model)."""
    if texts:
        return list(texts)
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"memory file {path!r} does not exist", where="editor params.memory_file",
                              hint="give a text file with one memory text per line")
        lines = [ln.strip() for ln in read_text(p, what="memory file", where="editor params.memory_file").splitlines() if ln.strip()]
        if not lines:
            raise ConfigError(f"memory file {path!r} holds no text", where="editor params.memory_file")
        return lines
    if samples == 0:
        return []
    cache = _samples.setdefault(model, {})
    key = (samples, sample_tokens, seed)
    if key not in cache:
        cache[key] = _sample(model, samples, sample_tokens, seed)
    return cache[key]


def _sample(model: "EditedModel", n: int, tokens: int, seed: int) -> list[str]:
    out = sample_ids(model, n, tokens, seed)
    if out is None:
        raise ConfigError("the tokenizer has no beginning- or end-of-text token to sample memory texts from",
                          where="editor params", hint="pass memory_texts or memory_file")
    texts = [model.tokenizer.decode(row[1:], skip_special_tokens=True).strip() for row in out]
    return [t for t in texts if t] or ["."]


@torch.no_grad()
def ffn_inputs(model: "EditedModel", module: torch.nn.Module, texts: list[str], limit: int) -> torch.Tensor:
    """The FFN's input at every (non-padding) token of ``texts``, at most ``limit`` rows."""
    if not texts:
        return torch.empty(0)
    captured: list[torch.Tensor] = []

    def grab(mod: torch.nn.Module, inputs: tuple, output: Any) -> None:
        captured.append(inputs[0].detach())

    tok = model.tokenizer
    rows: list[torch.Tensor] = []
    hook = module.register_forward_hook(grab)
    side = tok.padding_side
    tok.padding_side = "right"  # absolute position embeddings need the text at the start
    try:
        for start in range(0, len(texts), 32):
            enc = tok(texts[start:start + 32], return_tensors="pt", padding=True, add_special_tokens=True)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            captured.clear()
            model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            x = captured[0]
            rows.append(x[enc["attention_mask"].bool()].float().cpu())
    finally:
        hook.remove()
        tok.padding_side = side
    allx = torch.cat(rows)
    if allx.shape[0] > limit:
        g = torch.Generator().manual_seed(0)
        allx = allx[torch.randperm(allx.shape[0], generator=g)[:limit]]
    return allx
