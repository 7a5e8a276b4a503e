"""Knowledge attribution by integrated gradients (Dai et al., 2022, §3.1–3.2).

For a prompt and the fact's answer token, the intermediate activation ``w̄`` of layer ``l``'s
FFN at the prompt's last token (the position that predicts the answer; BERT's [MASK]) is
scaled from 0 to ``w̄``; neuron ``i``'s attribution is

    Attr(w_i) = w̄_i · ∫₀¹ ∂P(o | α w̄) / ∂w_i dα      (Riemann sum over ``steps`` points).

Knowledge neurons of one prompt are those with ``Attr > threshold · max Attr``; over several
prompts of the same fact, those found in at least ``share`` of the prompts are kept (the
paper's refining step).
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

__all__ = ["attribute", "knowledge_neurons", "Neuron"]


@dataclass(frozen=True)
class Neuron:
    layer: int
    index: int
    attribution: float
    activation: float = 1.0  # at the edit prompt's last token; its sign says which way the slot writes


def attribute(model: "EditedModel", prompt: str, target_token: int, layers: list[int],
              steps: int = 20) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """``({layer: Attr [d_ff]}, {layer: activation [d_ff]})`` for one prompt and answer token."""
    ids = torch.tensor([encode(model, prompt)], device=model.device)
    last = ids.shape[1] - 1
    base: dict[int, torch.Tensor] = {}
    with torch.no_grad(), HookSet() as hs:
        for layer in layers:
            hs.on_input(module_at(model, layer, "mlp_out"),
                        lambda x, layer=layer: base.__setitem__(layer, x[0, last].detach().float().clone()))
        run_unpadded(model, ids)
    alphas = torch.arange(1, steps + 1, device=model.device, dtype=torch.float32) / steps
    out: dict[int, torch.Tensor] = {}
    batch = ids.repeat(steps, 1)
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


def knowledge_neurons(model: "EditedModel", request: "EditRequest", *, layers: list[int] | None = None,
                      steps: int = 20, threshold: float = 0.2, share: float = 0.5, max_neurons: int | None = 20,
                      use_paraphrases: bool = False, target: str = "true") -> list[Neuron]:
    """The request's knowledge neurons, strongest first."""
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
        top = max(float(a.max()) for a in attr.values())
        if top <= 0:
            continue
        for layer, a in attr.items():
            for i in (a > threshold * top).nonzero()[:, 0].tolist():
                counts[(layer, i)] += 1
                total[(layer, i)] = total.get((layer, i), 0.0) + float(a[i])
    need = max(1, math.ceil(share * len(prompts)))
    kept = [Neuron(layer, i, total[(layer, i)] / counts[(layer, i)], float(acts[layer][i]) if acts else 1.0)
            for (layer, i), c in counts.items() if c >= need]
    kept.sort(key=lambda n: -n.attribution)
    return kept[:max_neurons] if max_neurons else kept
