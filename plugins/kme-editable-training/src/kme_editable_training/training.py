"""Editable Training (Sinitsin et al., ICLR 2020): meta-train the base model so that a few
gradient steps on an edit's loss make the edit without disturbing other inputs.

The editor is plain gradient descent on the edit loss ``l_e`` (the new object's NLL after the
prompt) over a set of *inner* weights, with a learned step size per weight:
``θ̂ = Edit^k(θ) = θ - α ∇l_e`` repeated ``k`` times. Training changes the base weights ``θ``
themselves to minimise (the paper's Eq. 3-4)

    L_base(θ) + c_edit · l_e(Edit^k(θ)) + c_loc · KL(f(x; θ) ‖ f(x; Edit^k(θ)))

by back-propagating through the ``k`` inner steps (second order; ``first_order`` drops the
inner steps' Hessian terms). ``L_base`` keeps the model doing its task: the authors' released
code uses the task's own loss on training data (here ``base_loss: nll``, the true objects of
training facts); MEND's authors' language-model baseline of the method uses the KL to the
original model instead (``base_loss: kl``). The KL of the stability term is taken on prompts
of unrelated training facts, as is ``L_base``.

The original model is never modified: training keeps its own copy of the weights and
evaluates every forward pass with ``torch.func.functional_call``. The checkpoint holds the
meta-trained weights (``base.<name>``) and the learned steps (``edit_lrs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.attention
from pydantic import Field

from kme import ConfigError

from kme_hyperlib.batches import (EditSampler, LMBatch, LocalitySource, Phrasing, kl_locality, masked_nll,
                                  requests_digest, target_correct)
from kme_hyperlib.capture import edit_targets
from kme_hyperlib.trainer import TrainLoop, TrainResult, TrainSettings

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["EditableTrainConfig", "train_editable", "default_layers", "inner_names", "sgd_edit", "TensorState"]

EDITOR = "editable-training"


class EditableTrainConfig(TrainSettings):
    """How the base model is meta-trained (see the plugin's README for the sources)."""

    steps: int = Field(300, ge=1, description="optimiser steps on the base weights")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate of the base weights")
    inner_steps: int = Field(1, ge=1, description="k: SGD steps of the edit during training (MEND's "
                                                  "language-model baseline: 1)")
    edit_lr: float = Field(1e-2, gt=0, description="initial SGD step size of the edit, per inner weight")
    lr_lr: float = Field(1e-3, ge=0, description="Adam learning rate of the per-weight edit step sizes (0: fixed)")
    c_edit: float = Field(1.0, ge=0, description="weight of the edit loss after k steps")
    c_loc: float = Field(1.0, ge=0, description="weight of the KL locality loss after k steps")
    base_loss: Literal["nll", "kl"] = Field("nll", description="L_base: nll = the task loss on training facts "
                                                               "(authors' code); kl = KL to the original model")
    c_base: float = Field(1.0, ge=0, description="weight of L_base")
    first_order: bool = Field(False, description="drop the inner steps' second-order terms (cheaper)")
    edits_per_step: int = Field(4, ge=1, description="independent edits per optimiser step")
    loc_per_edit: int = Field(4, ge=1, description="unrelated prompts per edit in L_base and the locality loss")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip of the base weights")
    outer: Phrasing = Field("prompt", description="phrasings the edit loss after k steps is measured on (the "
                                                  "authors: the edited input itself)")
    locality: LocalitySource = Field("random", description="where the unrelated prompts come from: random other "
                                                           "training facts, same_relation, neighbours (same "
                                                           "relation and old object) or mixed (random and "
                                                           "neighbours)")


def default_layers(model: "EditedModel") -> list[int]:
    """Blocks whose MLP weights the edit's gradient steps change: the last three, as in the
    language-model version of the method by MEND's authors (the same weights as MEND)."""
    n = model.num_layers
    return list(range(max(0, n - 3), n))


def inner_names(model: "EditedModel", layers: list[int]) -> list[str]:
    """The weights an edit changes: the MLP projections of ``layers``."""
    return [t.name for t in edit_targets(model, layers, ("mlp_in", "mlp_out"))]


class TensorState:
    """A dict of tensors with ``state_dict``/``load_state_dict`` (for the training loop)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.tensors.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in self.tensors.items():
                v.copy_(state[k])


def _call(net: torch.nn.Module, weights: dict[str, torch.Tensor], batch: LMBatch) -> torch.Tensor:
    out = torch.func.functional_call(net, weights, (), {"input_ids": batch.input_ids,
                                                        "attention_mask": batch.attention_mask})
    return out.logits.float()


def sgd_edit(net: torch.nn.Module, weights: dict[str, torch.Tensor], names: list[str], lrs: torch.Tensor,
             batch: LMBatch, steps: int, *, create_graph: bool, early_stop: bool = False
             ) -> tuple[dict[str, torch.Tensor], int, float]:
    """``steps`` SGD steps on the edit NLL of ``batch`` over the weights ``names`` (step size
    ``lrs[i]`` for ``names[i]``), starting from ``weights`` (every weight of ``net``). Returns
    the edited weights, the steps taken and the last loss. ``early_stop``: stop once every
    target token is the argmax (the authors' editor stops when the edit succeeds)."""
    current = dict(weights)
    taken, last = 0, float("nan")
    for _ in range(steps + (1 if early_stop else 0)):
        logits = _call(net, current, batch)
        loss = masked_nll(logits, batch)
        last = float(loss.detach())
        if early_stop and bool(target_correct(logits.detach(), batch).all()):
            break
        if taken == steps:
            break
        grads = torch.autograd.grad(loss, [current[n] for n in names], create_graph=create_graph)
        for i, (n, g) in enumerate(zip(names, grads)):
            current[n] = current[n] - lrs[i] * g
        taken += 1
    return current, taken, last


def train_editable(model: "EditedModel", requests: list["EditRequest"], out_dir: str,
                   cfg: EditableTrainConfig | None = None, *, layers: list[int] | None = None,
                   stop_after: int | None = None) -> TrainResult:
    """Meta-train a copy of ``model``'s weights on ``requests`` (a train split) and write the
    checkpoint to ``out_dir``; resumes a training state left there. ``stop_after`` stops
    early on purpose (state saved, no checkpoint)."""
    cfg = cfg or EditableTrainConfig()
    layers = list(layers) if layers is not None else default_layers(model)
    names = inner_names(model, layers)
    if not names:
        raise ConfigError(f"no MLP weights to edit in layers {layers}", where=f"editor {EDITOR!r} params.layers")
    net = model.model
    sampler = EditSampler(requests, seed=cfg.seed, loc_per_edit=cfg.loc_per_edit, inner="prompt",
                          outer=cfg.outer, locality=cfg.locality, where=f"editor {EDITOR!r} training requests")
    torch.manual_seed(cfg.seed)
    with model.suspended():
        original = {n: p.detach().clone() for n, p in net.named_parameters()}
    theta = {n: t.clone().requires_grad_(True) for n, t in original.items()}
    lrs = torch.full((len(names),), cfg.edit_lr, requires_grad=True)
    opt = torch.optim.Adam(list(theta.values()), lr=cfg.lr)
    lr_opt = torch.optim.Adam([lrs], lr=cfg.lr_lr) if cfg.lr_lr > 0 else None
    stateful: dict[str, Any] = {"theta": TensorState(theta), "lrs": TensorState({"lrs": lrs}), "opt": opt,
                                "sampler": sampler}
    if lr_opt is not None:
        stateful["lr_opt"] = lr_opt
    config = {"requests": requests_digest(sampler.requests), "train": cfg.model_dump(), "layers": layers,
              "inner": names, "base_fingerprint": model.base_fingerprint}
    loop = TrainLoop(out_dir, steps=cfg.steps, desc=EDITOR, save_every=cfg.save_every, stop_after=stop_after,
                     stateful=stateful, config=config)

    def step_fn(step: int) -> dict[str, float]:
        st = sampler.sample(model, cfg.edits_per_step)
        G = len(st.edits)
        loc_logits = _call(net, theta, st.loc)
        if cfg.base_loss == "nll":
            l_base = masked_nll(loc_logits, st.loc)
        else:
            with torch.no_grad():
                orig_logits = _call(net, original, st.loc)
            l_base = kl_locality(orig_logits, loc_logits, st.loc)
        l_edits, l_locs, accs = [], [], []
        for g in range(G):
            inner = _rows(st.inner, g)
            outer = _rows(st.outer, g)
            loc = _rows(st.loc, g)
            edited, _, _ = sgd_edit(net, theta, names, lrs, inner, cfg.inner_steps,
                                    create_graph=not cfg.first_order)
            both = LMBatch.cat([outer, loc], model.tokenizer.pad_token_id)
            post = _call(net, edited, both)
            post_outer = post[: len(outer), : outer.input_ids.shape[1]]
            post_loc = post[len(outer):, : loc.input_ids.shape[1]]
            pre_loc = loc_logits[st.loc.group == g][:, : loc.input_ids.shape[1]]
            l_edits.append(masked_nll(post_outer, outer))
            l_locs.append(kl_locality(pre_loc.detach(), post_loc, loc))
            accs.append(target_correct(post_outer.detach(), outer).float().mean())
        l_edit = torch.stack(l_edits).mean()
        l_loc = torch.stack(l_locs).mean()
        loss = cfg.c_base * l_base + cfg.c_edit * l_edit + cfg.c_loc * l_loc
        opt.zero_grad()
        if lr_opt is not None:
            lr_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(theta.values()), cfg.grad_clip)
        opt.step()
        if lr_opt is not None:
            lr_opt.step()
            with torch.no_grad():
                lrs.clamp_(min=0.0)
        return {"loss": float(loss.detach()), "base": float(l_base.detach()), "edit_nll": float(l_edit.detach()),
                "kl": float(l_loc.detach()), "edit_acc": float(torch.stack(accs).mean())}

    was_training = net.training
    net.eval()
    try:
        # the fused CPU/GPU attention kernels have no second derivative; the math one does
        with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
            result = loop.run(step_fn)
    finally:
        net.train(was_training)
    if result.finished:
        with torch.no_grad():
            changed = {f"base.{n}": t.detach().clone() for n, t in theta.items() if not torch.equal(t, original[n])}
            drift = {n[5:]: float((t - original[n[5:]]).norm() / original[n[5:]].norm().clamp_min(1e-12))
                     for n, t in changed.items()}
        loop.finish(editor=EDITOR, model=model, tensors={**changed, "edit_lrs": lrs.detach().clone()},
                    config={"layers": layers, "inner": names, "inner_steps": cfg.inner_steps,
                            "train": cfg.model_dump()},
                    result=result, metrics={"train_requests": len(sampler.requests), "changed_weights": len(changed),
                                            "max_relative_drift": round(max(drift.values(), default=0.0), 5)})
    return result


def _rows(batch: LMBatch, g: int) -> LMBatch:
    keep = batch.group == g
    width = int(batch.attention_mask[keep].sum(-1).max()) if bool(keep.any()) else 1
    return LMBatch(batch.input_ids[keep][:, :width], batch.attention_mask[keep][:, :width],
                   batch.labels[keep][:, :width], batch.group[keep])
