"""Turning token id lists into padded model inputs: one place for every caller."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["pad_sequences"]


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int | None, device: "torch.device | str" = "cpu",
                  *, side: str = "right", width: int | None = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``input_ids`` and ``attention_mask`` for ``seqs``, padded to the longest with ``pad_id``.

    Right padding (the default) keeps every real token at its unpadded position, which is what
    the editors' position bookkeeping (subject token, target positions) relies on; ``side="left"``
    is for generation, where each row's last real token must be the last column. ``width``
    pads to a fixed length instead of the longest: a row's outputs can differ in the last bits
    with the padded length (attention reductions), so batching that must reproduce unbatched
    results pads each row to the width it would have alone.
    """
    import torch

    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', not {side!r}")
    if not seqs:
        raise ValueError("pad_sequences needs at least one sequence")
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token id (load the model through kme, which sets one)")
    longest = max(len(s) for s in seqs)
    if width is None:
        width = longest
    elif width < longest:
        raise ValueError(f"width {width} is shorter than the longest sequence ({longest} tokens)")
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if not len(s):
            continue
        cols = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[r, cols] = torch.as_tensor(list(s), dtype=torch.long)
        mask[r, cols] = 1
    return ids.to(device), mask.to(device)
