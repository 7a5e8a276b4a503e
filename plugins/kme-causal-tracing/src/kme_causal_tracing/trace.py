"""One causal trace: clean run, corrupted runs, and restorations of every (layer, token).

Kinds of restoration (ROME Fig. 1):

- ``hidden``: the residual stream after block ``l`` at token ``i``;
- ``mlp``: the MLP outputs at token ``i`` of the ``window`` layers centred on ``l``;
- ``attn``: the attention outputs likewise.

Every corrupted run uses the same ``samples`` noise draws, so restored and corrupted
probabilities are compared on identical noise. All tokens of one layer are restored in one
batched forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from kme import KmeError
from kme_editlib.hooks import HookSet, eval_mode, module_at, run_unpadded
from kme_editlib.tokens import encode, request_text, subject_token_range, target_ids_of

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["Trace", "trace_request", "embedding_std", "KIND_PART"]

KIND_PART = {"hidden": "block", "mlp": "mlp", "attn": "attn_out"}


@dataclass
class Trace:
    """A request's trace; ``effects[kind][token][layer]`` is P(target) after restoring, minus
    P(target) under corruption (the indirect effect)."""

    case_id: str | int
    prompt: str
    tokens: list[str]
    subject_range: tuple[int, int]
    target: str
    target_token: int
    p_clean: float
    p_corrupted: float
    noise_std: float
    window: int
    effects: dict[str, list[list[float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id, "prompt": self.prompt, "tokens": self.tokens,
            "subject_range": list(self.subject_range), "target": self.target, "target_token": self.target_token,
            "p_clean": self.p_clean, "p_corrupted": self.p_corrupted, "noise_std": self.noise_std,
            "window": self.window, "indirect_effect": self.effects,
            "layout": "indirect_effect[kind][token][layer]",
        }


def embedding_std(model: "EditedModel") -> float:
    """Standard deviation of the token embedding matrix (the noise scale's unit)."""
    w = model.layout.top(model.model, "embed").weight
    return float(w.detach().float().std())


def _window(layer: int, n: int, window: int) -> list[int]:
    lo = max(0, layer - window // 2)
    hi = min(n, layer - (-window // 2))
    return list(range(lo, max(hi, lo + 1)))


@torch.no_grad()
def trace_request(model: "EditedModel", request: "EditRequest", *, noise_std: float, samples: int = 10,
                  window: int = 10, kinds: tuple[str, ...] = ("hidden", "mlp", "attn"), target: str = "true",
                  seed: int = 0) -> Trace:
    """Trace one request's fact (the old object ``target_true``, or the model's prediction
    when ``target="prediction"`` or the request has none)."""
    text, offset = request_text(request)
    ids = encode(model, text)
    s0, s1 = subject_token_range(model, text, request.subject, offset)
    n_layers = model.num_layers
    dev = model.device
    x = torch.tensor([ids], device=dev)
    with eval_mode(model):
        clean_states: dict[tuple[int, str], torch.Tensor] = {}
        with HookSet() as hs:
            for layer in range(n_layers):
                for kind in kinds:
                    part = KIND_PART[kind]
                    hs.on_output(module_at(model, layer, part),
                                 lambda y, key=(layer, part): clean_states.__setitem__(key, y[0].detach().clone()))
            logits = run_unpadded(model, x).logits[0, -1].float()
        probs = torch.softmax(logits, -1)
        if target == "true" and request.target_true:
            tok = target_ids_of(model, text, request.target_true, what="target_true")[0]
            shown = request.target_true
        else:
            tok = int(probs.argmax())
            shown = model.tokenizer.decode([tok])
        p_clean = float(probs[tok])

        gen = torch.Generator().manual_seed(seed)
        embed = model.layout.top(model.model, "embed")
        d = int(embed.weight.shape[1])
        noise = (torch.randn(samples, s1 - s0 + 1, d, generator=gen) * noise_std).to(dev)

        def corrupt(rows: int):
            def fn(e: torch.Tensor) -> torch.Tensor:
                e = e.clone()
                e[:, s0:s1 + 1] += noise.repeat(rows // samples, 1, 1).to(e.dtype)
                return e
            return fn

        def p_target(batch_logits: torch.Tensor) -> torch.Tensor:
            return torch.softmax(batch_logits[:, -1].float(), -1)[:, tok]

        with HookSet() as hs:
            hs.on_output(embed, corrupt(samples))
            p_low = float(p_target(run_unpadded(model, x.repeat(samples, 1)).logits).mean())

        T = len(ids)
        effects: dict[str, list[list[float]]] = {}
        big = x.repeat(T * samples, 1)
        rows = torch.arange(T * samples, device=dev)
        pos = torch.arange(T, device=dev).repeat_interleave(samples)
        for kind in kinds:
            part = KIND_PART[kind]
            table = torch.zeros(T, n_layers)
            for layer in range(n_layers):
                restore = [layer] if kind == "hidden" else _window(layer, n_layers, window)
                with HookSet() as hs:
                    hs.on_output(embed, corrupt(T * samples))
                    for lr in restore:
                        clean = clean_states[(lr, part)]

                        def put(y: torch.Tensor, clean: torch.Tensor = clean) -> torch.Tensor:
                            return y.index_put((rows, pos), clean[pos].to(y.dtype))

                        hs.on_output(module_at(model, lr, part), put)
                    p = p_target(run_unpadded(model, big).logits)
                table[:, layer] = p.view(T, samples).mean(1).cpu() - p_low
            effects[kind] = table.tolist()
    tokens = [model.tokenizer.decode([t]) for t in ids]
    return Trace(case_id=request.case_id, prompt=text, tokens=tokens, subject_range=(s0, s1), target=shown,
                 target_token=tok, p_clean=p_clean, p_corrupted=p_low, noise_std=noise_std, window=window,
                 effects=effects)


def check_kinds(kinds: list[str]) -> None:
    bad = [k for k in kinds if k not in KIND_PART]
    if bad:
        raise KmeError(f"unknown trace kind(s) {bad}", hint=f"use some of {sorted(KIND_PART)}")
