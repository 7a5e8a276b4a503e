"""PPA's scope gate: which inputs the plug-ins answer.

PPA's released code keeps, for every update, the normalised representations of the update's
training inputs computed by the frozen original model. A query is embedded the same way; its
cosine similarity to every stored representation is taken, the update holding the most
similar one is its candidate, and that update's plug-in is switched on only when the
similarity reaches the threshold. Every other query runs on the original model, untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from kme import pad_sequences

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["embed", "Pooling"]

Pooling = Literal["last", "mean"]


@torch.no_grad()
def embed(model: "EditedModel", texts: Sequence[str], layer: int = -1, pooling: Pooling = "last",
          batch_size: int = 64) -> torch.Tensor:
    """L2-normalised representation of each text by the model as it is (no plug-in active):
    the hidden state ``layer`` (``-1``: the final one, after the last norm) at the last token
    (``last``) or averaged over the text's tokens (``mean``); ``[len(texts), hidden]``, float32
    on cpu."""
    tok = model.tokenizer
    rows: list[torch.Tensor] = []
    enc = [tok(t, add_special_tokens=True)["input_ids"] for t in texts]
    for start in range(0, len(enc), batch_size):
        chunk = enc[start:start + batch_size]
        ids, mask = pad_sequences(chunk, tok.pad_token_id, model.device)
        out = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
        h = out.hidden_states[layer].float()
        if pooling == "mean":
            m = mask.unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1).clamp_min(1)
        else:
            v = h[torch.arange(len(chunk), device=h.device), mask.sum(1) - 1]
        rows.append(torch.nn.functional.normalize(v, dim=-1).cpu())
    if not rows:
        return torch.empty(0, 0)
    return torch.cat(rows)
