"""KnowledgeEditor's hypernetwork (De Cao et al., 2021, "Editing Factual Knowledge in Language
Models", section 3), shared by the ``ke``, ``slag`` and ``kgeditor`` editors.

An edit is read twice: as *text* (a condition such as ``"Paris >> Rome || The capital of
France is"``) by a bidirectional LSTM over token embeddings copied from the edited model, and
as the *gradient* of the edit's loss with respect to each edited matrix. For every edited
matrix ``W`` (shape ``r × c``) a small conditioner maps the LSTM's condition vector to two
rank-one masks and a gate, and the predicted change is

    ΔW = max_scale · σ(η) · (∇W ⊙ α + β),   α = softmax(a_rows)ᵀ a_cols,   β = softmax(b_rows)ᵀ b_cols

so the network rescales and shifts the fine-tuning gradient rather than producing a full
matrix: its size grows with ``r + c``, not ``r · c``. Several edits at once (one condition
row each) sum their masks and average their gates, as the KGEditor release does for a batch
of edits; with one edit this is exactly KnowledgeEditor's update.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ConditionedParameter", "ConditionEncoder", "KEHyperNetwork", "freeze", "net_config"]


def _wn_linear(n_in: int, n_out: int) -> nn.Module:
    """A weight-normalised linear layer (the release wraps every conditioner layer so)."""
    return nn.utils.parametrizations.weight_norm(nn.Linear(n_in, n_out))


class ConditionedParameter(nn.Module):
    """Maps the condition vector and one matrix's gradient to that matrix's change."""

    def __init__(self, shape: tuple[int, int], condition_dim: int, hidden_dim: int, max_scale: float):
        super().__init__()
        if len(shape) != 2:
            raise ValueError(f"only matrices are edited, got a tensor of shape {tuple(shape)}")
        self.rows, self.cols = int(shape[0]), int(shape[1])
        self.max_scale = float(max_scale)
        self.net = nn.Sequential(_wn_linear(condition_dim, hidden_dim), nn.Tanh(),
                                 _wn_linear(hidden_dim, 2 * (self.rows + self.cols) + 1))

    def forward(self, condition: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``condition``: ``[n_edits, condition_dim]``; ``grad``: ``[rows, cols]``."""
        a_cols, a_rows, b_cols, b_rows, gate = self.net(condition).split(
            [self.cols, self.rows, self.cols, self.rows, 1], dim=-1)
        alpha = a_rows.softmax(-1).T @ a_cols  # [rows, cols], summed over the edits
        beta = b_rows.softmax(-1).T @ b_cols
        scale = self.max_scale * gate.sigmoid().mean()
        return scale * (grad * alpha + beta)


class ConditionEncoder(nn.Module):
    """Bidirectional LSTM over the condition's token embeddings, final states of both
    directions, then one tanh layer: the release's ``LSTMConditioner``."""

    def __init__(self, embedding: torch.Tensor, hidden_dim: int, condition_dim: int):
        super().__init__()
        vocab, dim = embedding.shape
        self.embedding = nn.Embedding(vocab, dim)
        with torch.no_grad():
            self.embedding.weight.copy_(embedding.float())
        self.lstm = nn.LSTM(dim, hidden_dim, num_layers=1, bidirectional=True, batch_first=True)
        self.out = nn.Sequential(nn.Linear(2 * hidden_dim, condition_dim), nn.Tanh())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(-1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: [2, n, hidden]
        return self.out(torch.cat([h[0], h[1]], dim=-1))


def _key(name: str) -> str:
    return name.replace(".", "_")


class KEHyperNetwork(nn.Module):
    """One condition encoder and one :class:`ConditionedParameter` per edited matrix."""

    def __init__(self, shapes: dict[str, tuple[int, int]], embedding: torch.Tensor, *, hidden_dim: int = 128,
                 condition_dim: int = 1024, max_scale: float = 1.0):
        super().__init__()
        self.names = list(shapes)
        self.encoder = ConditionEncoder(embedding, hidden_dim, condition_dim)
        self.conditioners = nn.ModuleDict({_key(n): ConditionedParameter(tuple(s), condition_dim, hidden_dim,
                                                                         max_scale)
                                           for n, s in shapes.items()})

    def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The change of each edited matrix for the edits whose conditions are ``ids``."""
        return self.changes(self.encoder(ids, mask), grads)

    def changes(self, condition: torch.Tensor, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The change of each edited matrix from an encoded condition (reused across the
        repeated applications of a learned-optimizer loop)."""
        return {n: self.conditioners[_key(n)](condition, grads[n]) for n in self.names}


def freeze(net: KEHyperNetwork) -> KEHyperNetwork:
    """For editing only: fold each weight normalisation into a plain weight (computed once,
    not at every edit) and stop gradients. Same outputs up to float rounding."""
    from torch.nn.utils import parametrize

    for module in net.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def net_config(shapes: dict[str, tuple[int, int]], embedding_shape: tuple[int, int], *, hidden_dim: int,
               condition_dim: int, max_scale: float) -> dict[str, Any]:
    """What a checkpoint records to rebuild the network (JSON values)."""
    return {"shapes": {n: list(s) for n, s in shapes.items()}, "embedding_shape": list(embedding_shape),
            "hidden_dim": hidden_dim, "condition_dim": condition_dim, "max_scale": max_scale}
