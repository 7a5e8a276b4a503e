"""Text sampled from the model itself: what memory and extension editors use instead of a
corpus (TF-IDF background, T-Patcher's memory set, CALINET's retain texts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["sample_ids"]


@torch.no_grad()
def sample_ids(model: "EditedModel", n: int, tokens: int, seed: int) -> torch.Tensor | None:
    """``n`` samples (top-k 50, seeded) of up to ``tokens`` tokens continued by the model from
    its beginning-of-text token (end-of-text if it has none), that token first: ``[n, 1 + at
    most tokens]`` ids. ``None`` when the tokenizer has neither token. The global random state
    is left as it was."""
    tok = model.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if start is None:
        return None
    ids = torch.full((n, 1), start, dtype=torch.long, device=model.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=50,
                                    max_new_tokens=tokens, pad_token_id=tok.pad_token_id)
