"""Training MEND's networks on a dataset's train split (Mitchell et al., 2022a, Alg. 1).

One step edits ``edits_per_step`` training requests, each on its own (the released code's
``n_edits: 1`` with ``accumulate_bs`` edits per optimiser step): for each edit

1. the base model's edit loss on the request's prompt (new object's tokens only) gives, at
   every edited weight, the per-token factors ``(u_t, δ_t)`` — captured with hooks, no
   parameter gradient is formed (:func:`kme_hyperlib.capture.capture_factors`);
2. the networks map them to ``(ũ_t, δ̃_t)``; the edited weight is ``W + α_ℓ Σ_t ũ_t δ̃_tᵀ``;
3. the edited model is evaluated without forming that change: each edited module's output
   gets ``α_ℓ (x Ũᵀ) D̃`` added (:class:`kme_hyperlib.capture.LowRankDelta`), so memory
   grows with tokens × width, not width²;
4. loss = ``c_edit · NLL(new object | paraphrases)`` + ``c_loc · KL(base ‖ edited)`` on the
   prompts of unrelated training requests; its gradient trains the networks (Adam, ``lr``)
   and the steps ``α_ℓ`` (Adam, ``lr_lr``), clipped to ``grad_clip``.

The base model is never trained. Steps are resumable (:class:`kme_hyperlib.trainer.TrainLoop`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from kme import ConfigError

from kme_hyperlib.batches import (EditSampler, LMBatch, LocalitySource, Phrasing, kl_locality, masked_nll,
                                  requests_digest, target_correct)
from kme_hyperlib.capture import (EditTarget, LowRankDelta, capture_factors, edit_targets, frozen_parameters,
                                  module_of)
from kme_hyperlib.trainer import TrainLoop, TrainResult, TrainSettings
from kme_mend.nets import MendNetworks

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["MendTrainConfig", "train_mend", "default_layers", "targets_for"]

EDITOR = "mend"


class MendTrainConfig(TrainSettings):
    """How MEND is trained. Released-code values unless noted (``config/alg/mend.yaml``,
    ``config/config.yaml``)."""

    steps: int = Field(10000, ge=1, description="optimiser steps (the released code trains until the validation "
                                                "loss stops improving; the fact-world preset: 400)")
    lr: float = Field(1e-6, gt=0, description="Adam learning rate of the editor networks (released: 1e-6; the "
                                              "fact-world preset: 1e-4 for its short budget)")
    edit_lr: float = Field(1e-4, gt=0, description="initial per-weight edit step α (released: 1e-4)")
    lr_lr: float = Field(1e-4, gt=0, description="Adam learning rate of the steps α (released: 1e-4)")
    c_edit: float = Field(0.1, ge=0, description="weight of the edit loss (released: 0.1)")
    c_loc: float = Field(1.0, ge=0, description="weight of the KL locality loss (released: 1.0)")
    edits_per_step: int = Field(10, ge=1, description="independent edits per optimiser step (released: "
                                                      "accumulate_bs 10 with one edit each)")
    loc_per_edit: int = Field(10, ge=1, description="unrelated prompts in each edit's locality loss (released: "
                                                    "batch_size 10)")
    grad_clip: float = Field(100.0, gt=0, description="gradient-norm clip (released: 100)")
    rank: int = Field(1920, ge=1, description="rank of the networks' low-rank layers, capped at their width "
                                              "(released: 1920)")
    n_hidden: int = Field(1, ge=0, description="hidden layers of each network (released: 1)")
    combine: bool = Field(True, description="transform u and δ together (released: true)")
    shared: bool = Field(True, description="one network per weight shape, told apart by per-layer scale and "
                                           "offset (released: true)")
    norm: bool = Field(True, description="standardise u and δ with running statistics (released: true)")
    inner: Phrasing = Field("prompt", description="phrasing the edit's gradient is taken on")
    outer: Phrasing = Field("paraphrase", description="phrasings the edit loss is measured on (released: the "
                                                      "rephrasing, zsRE's data.rephrase: true)")
    locality: LocalitySource = Field("random", description="where locality prompts come from: random other "
                                                           "training facts (released: unrelated questions), "
                                                           "same_relation, neighbours (same relation and old "
                                                           "object) or mixed (random and neighbours)")
    kl_positions: str = Field("all", pattern="^(all|target)$",
                              description="positions of the locality prompts the KL covers (released: all)")


def default_layers(model: "EditedModel") -> list[int]:
    """The released GPT configs edit the MLPs of the last three blocks (GPT-2 XL 45-47,
    GPT-J 25-27); the same rule is used on every model, down to the last block of one."""
    n = model.num_layers
    return list(range(max(0, n - 3), n))


def targets_for(model: "EditedModel", layers: list[int]) -> list[EditTarget]:
    """The MLP weights MEND edits in ``layers``: input and output projections (and the gate
    of gated MLPs), as in the released configs (``c_fc``/``c_proj``; gate/up/down)."""
    return edit_targets(model, layers, ("mlp_in", "mlp_out"))


def _target_dicts(targets: list[EditTarget]) -> list[dict[str, Any]]:
    return [{"name": t.name, "module": t.module_name, "layer": t.layer, "part": t.part, "d_in": t.d_in,
             "d_out": t.d_out, "conv1d": t.conv1d} for t in targets]


def _pack(rows: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``[tokens, d]`` rows with their group → ``[n_groups, max tokens, d]``, zero-padded."""
    counts = torch.bincount(groups, minlength=n_groups)
    width = int(counts.max()) if len(counts) else 0
    out = rows.new_zeros(n_groups, max(1, width), rows.shape[-1])
    order = torch.argsort(groups, stable=True)
    g_sorted = groups[order]
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(groups), device=groups.device) - starts[g_sorted]
    return out.index_put((g_sorted, pos), rows[order])


def train_mend(model: "EditedModel", requests: list["EditRequest"], out_dir: str, cfg: MendTrainConfig | None = None,
               *, layers: list[int] | None = None, stop_after: int | None = None) -> TrainResult:
    """Train MEND's networks for ``model`` on ``requests`` (a train split) into ``out_dir``.
    Resumes from a training state left there; with ``stop_after`` it stops after that many
    steps (state saved, no checkpoint) — an interruption on purpose."""
    cfg = cfg or MendTrainConfig()
    layers = list(layers) if layers is not None else default_layers(model)
    targets = targets_for(model, layers)
    if not targets:
        raise ConfigError(f"no MLP weights to edit in layers {layers}", where="editor 'mend' params.layers")
    net = model.model
    sampler = EditSampler(requests, seed=cfg.seed, loc_per_edit=cfg.loc_per_edit, inner=cfg.inner,
                          outer=cfg.outer, locality=cfg.locality, where="editor 'mend' training requests")
    torch.manual_seed(cfg.seed)
    nets = MendNetworks(_target_dicts(targets), rank=cfg.rank, n_hidden=cfg.n_hidden, combine=cfg.combine,
                        norm=cfg.norm, shared=cfg.shared, edit_lr=cfg.edit_lr).to(model.device)
    opt = torch.optim.Adam(nets.network_parameters(), lr=cfg.lr)
    lr_opt = torch.optim.Adam([nets.edit_lrs], lr=cfg.lr_lr)
    config = {"requests": requests_digest(sampler.requests), "train": cfg.model_dump(), "layers": layers,
              "targets": [t.name for t in targets], "base_fingerprint": model.base_fingerprint}
    loop = TrainLoop(out_dir, steps=cfg.steps, desc="mend", save_every=cfg.save_every, stop_after=stop_after,
                     stateful={"nets": nets, "opt": opt, "lr_opt": lr_opt, "sampler": sampler}, config=config)
    modules = {t.name: module_of(model, t.module_name) for t in targets}
    params = list(nets.parameters())

    def step_fn(step: int) -> dict[str, float]:
        st = sampler.sample(model, cfg.edits_per_step)
        G = len(st.edits)
        inner = st.inner
        factors, _ = capture_factors(net, modules, lambda: masked_nll(inner.forward(net), inner, n_groups=G).sum(),
                                     token_mask=inner.attention_mask)
        nets.train()
        delta = LowRankDelta(net, modules)
        for i, t in enumerate(targets):
            f = factors[t.name]
            u_t, d_t = nets.transform(i, f.u, f.delta)
            g = inner.group[f.row]
            delta.set(t.name, _pack(u_t, g, G), _pack(d_t, g, G), nets.edit_lrs[i])
        both = LMBatch.cat([st.outer, st.loc], model.tokenizer.pad_token_id)
        n_outer = len(st.outer)
        with torch.no_grad():
            pre_loc = st.loc.forward(net)
        with delta:
            delta.groups(both.group)
            post = both.forward(net)
        post_outer = post[:n_outer, : st.outer.input_ids.shape[1]]
        post_loc = post[n_outer:, : st.loc.input_ids.shape[1]]
        l_edit = masked_nll(post_outer, st.outer, n_groups=G)
        l_loc = kl_locality(pre_loc, post_loc, st.loc, positions=cfg.kl_positions, n_groups=G)  # type: ignore[arg-type]
        loss = (cfg.c_edit * l_edit + cfg.c_loc * l_loc).mean()
        opt.zero_grad()
        lr_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        lr_opt.step()
        with torch.no_grad():
            acc = target_correct(post_outer, st.outer).float().mean()
        return {"loss": float(loss.detach()), "edit_nll": float(l_edit.detach().mean()),
                "kl": float(l_loc.detach().mean()), "edit_acc": float(acc)}

    with model.suspended(), frozen_parameters(net):
        was_training = net.training
        net.eval()
        try:
            result = loop.run(step_fn)
        finally:
            net.train(was_training)
    nets.eval()
    if result.finished:
        loop.finish(editor=EDITOR, model=model, tensors=dict(nets.state_dict()),
                    config={**nets.config(), "layers": layers, "train": cfg.model_dump()}, result=result,
                    metrics={"train_requests": len(sampler.requests)})
    return result
