"""FFN neuron attribution by integrated gradients, shared by neuron-level methods.

Knowledge neurons (Dai et al., 2022) and privacy neurons (DEPN, Wu et al., 2023) rank the
intermediate neurons of every FFN by how much they carry the probability of an answer token.
For a token sequence and an answer token, the intermediate activation ``w̄`` of layer ``l``'s
FFN at the sequence's last position (the one predicting the answer) is scaled from 0 to
``w̄``; neuron ``i``'s attribution is

    Attr(w_i) = w̄_i · ∫₀¹ ∂P(answer | α w̄) / ∂w_i dα      (Riemann sum over ``steps`` points).

- :func:`attribute` / :func:`attribute_ids`: one answer token after a prompt (or token ids);
- :func:`continuation_attribution`: summed over every token of a multi-token continuation,
  each scored after the prompt and the continuation's earlier tokens (DEPN's private strings);
- :func:`above_threshold`: the neurons above a share of the strongest one, over all layers;
- :func:`knowledge_neurons`: Dai et al.'s selection for one request (threshold, then refined
  across prompts).

The methods differ only in how they select and change neurons; the attribution is one code
path, so that a fix or a speed-up reaches them all.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from kme import KmeError
from kme_editlib.hooks import HookSet, frozen_params, module_at, run_unpadded
from kme_editlib.tokens import encode, target_ids_of

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["Neuron", "attribute", "attribute_ids", "continuation_attribution", "above_threshold",
           "knowledge_neurons"]

Attribution = dict[int, torch.Tensor]  # layer -> [d_ff]


@dataclass(frozen=True)
class Neuron:
    layer: int
    index: int
    attribution: float
    activation: float = 1.0  # at the edit prompt's last token; its sign says which way the slot writes


def attribute_ids(model: "EditedModel", ids: list[int], target_token: int, layers: list[int],
                  steps: int = 20) -> tuple[Attribution, Attribution]:
    """``({layer: Attr [d_ff]}, {layer: activation [d_ff]})`` for the token after ``ids``."""
    seq = torch.tensor([ids], device=model.device)
    last = seq.shape[1] - 1
    base: dict[int, torch.Tensor] = {}
    with torch.no_grad(), HookSet() as hs:
        for layer in layers:
            hs.on_input(module_at(model, layer, "mlp_out"),
                        lambda x, layer=layer: base.__setitem__(layer, x[0, last].detach().float().clone()))
        run_unpadded(model, seq)
    alphas = torch.arange(1, steps + 1, device=model.device, dtype=torch.float32) / steps
    out: dict[int, torch.Tensor] = {}
    batch = seq.repeat(steps, 1)
    rows = torch.arange(steps, device=model.device)
    pos = torch.full((steps,), last, device=model.device)
    with frozen_params(model):
        for layer in layers:
            scaled = (alphas[:, None] * base[layer][None]).requires_grad_(True)
            with HookSet() as hs:
                hs.replace_input(module_at(model, layer, "mlp_out"),
                                 lambda x: x.index_put((rows, pos), scaled.to(x.dtype)))
                logits = run_unpadded(model, batch).logits[:, -1].float()
            prob = torch.softmax(logits, -1)[:, target_token]
            (grad,) = torch.autograd.grad(prob.sum(), scaled)
            out[layer] = (base[layer] * grad.mean(0)).detach().cpu()
    return out, {layer: a.cpu() for layer, a in base.items()}


def attribute(model: "EditedModel", prompt: str, target_token: int, layers: list[int],
              steps: int = 20) -> tuple[Attribution, Attribution]:
    """:func:`attribute_ids` on a prompt's tokens (special tokens included, as ``score`` reads it)."""
    return attribute_ids(model, encode(model, prompt), target_token, layers, steps)


def continuation_attribution(model: "EditedModel", prompt: str, target: str, layers: list[int],
                             steps: int = 20, *, what: str = "target") -> Attribution:
    """Attributions summed over the tokens of ``target`` continuing ``prompt``: token ``j`` is
    attributed after the prompt and target tokens ``< j`` (teacher forcing, the way the string
    would be extracted token by token)."""
    ids = encode(model, prompt)
    total: dict[int, torch.Tensor] = {}
    for tok in target_ids_of(model, prompt, target, what=what):
        attr, _ = attribute_ids(model, ids, tok, layers, steps)
        for layer, a in attr.items():
            total[layer] = total[layer] + a if layer in total else a
        ids = ids + [tok]
    return total


def above_threshold(attr: Attribution, threshold: float) -> dict[tuple[int, int], float]:
    """``{(layer, index): Attr}`` of the neurons above ``threshold`` × the largest attribution
    over all layers; empty when no attribution is positive."""
    top = max((float(a.max()) for a in attr.values()), default=0.0)
    if top <= 0:
        return {}
    return {(layer, i): float(a[i]) for layer, a in attr.items()
            for i in (a > threshold * top).nonzero()[:, 0].tolist()}


def knowledge_neurons(model: "EditedModel", request: "EditRequest", *, layers: list[int] | None = None,
                      steps: int = 20, threshold: float = 0.2, share: float = 0.5, max_neurons: int | None = 20,
                      use_paraphrases: bool = False, target: str = "true") -> list[Neuron]:
    """Dai et al.'s knowledge neurons of a request, strongest first: neurons above ``threshold``
    × the prompt's maximum, kept when found in at least ``share`` of the prompts."""
    layers = [model.check_layer(layer) for layer in (layers or range(model.num_layers))]
    prompts = [request.text] + ([q for q in request.paraphrase_prompts if request.subject in q]
                                if use_paraphrases else [])
    if target == "true" and request.target_true:
        tok = target_ids_of(model, request.text, request.target_true, what="target_true")[0]
    elif target in ("true", "prediction"):
        with torch.no_grad():
            tok = int(model.next_token_logprobs([request.text], use_memory=False)[0].argmax())
    else:
        raise KmeError(f"unknown attribution target {target!r}", hint="use 'true' or 'prediction'")
    counts: Counter[tuple[int, int]] = Counter()
    total: dict[tuple[int, int], float] = {}
    acts: dict[int, torch.Tensor] = {}
    for j, prompt in enumerate(prompts):
        attr, act = attribute(model, prompt, tok, layers, steps)
        if j == 0:
            acts = act
        for key, value in above_threshold(attr, threshold).items():
            counts[key] += 1
            total[key] = total.get(key, 0.0) + value
    need = max(1, math.ceil(share * len(prompts)))
    kept = [Neuron(layer, i, total[(layer, i)] / counts[(layer, i)], float(acts[layer][i]) if acts else 1.0)
            for (layer, i), c in counts.items() if c >= need]
    kept.sort(key=lambda n: -n.attribution)
    return kept[:max_neurons] if max_neurons else kept
