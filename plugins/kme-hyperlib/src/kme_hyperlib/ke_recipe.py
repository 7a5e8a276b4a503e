"""KnowledgeEditor's training recipe and edit step, on a causal LM (De Cao et al., 2021), with
SLAG's extra objectives (Hase et al., 2023) as options.

**Where the edit goes** is a :class:`KETarget`: the tensors the hypernetwork changes, how
they enter the model's forward pass, and how an edit is written through the handle.
:class:`WeightTarget` edits existing weight matrices (KE, SLAG); KGEditor's extra FFN layer is
another target (in its plugin).

**One training step** (released ``training_step``) takes ``edits_per_step`` training requests
as the edits and ``batch_size`` other training requests as locality inputs:

1. the edit's gradient: the new object's mean token NLL on the edit prompt, differentiated
   with respect to the target tensors of the current model (a constant for the hypernetwork);
2. ``Δ = net(condition, gradient)``; the model with ``θ + Δ`` is run on every input;
3. the objective, ``lagrangian`` (KE): ``CE(edit [+ a paraphrase]) + α · (KL − margin)``
   with ``KL(p_θ ‖ p_θ+Δ)`` on the locality inputs, ``α ≥ 0`` raised by gradient *ascent*,
   and the margin shrunk ×0.8 whenever held-out edit success passes 0.9; or ``weighted``
   (SLAG): a normalised weighted sum of the edit's CE, the locality KL, the paraphrases' CE,
   the entailed questions' CE and the neutral inputs' KL (each term only where the request
   has such data);
4. SLAG's learned-optimizer loop: up to ``update_steps`` applications, each from the
   gradient at the updated weights, stopping once the edit is top-1, the loss summed;
   ``sequence > 1`` keeps the update of the previous requests (detached) for that many
   steps, as SLAG's sequential-update training.

The loop is :class:`kme_hyperlib.trainer.TrainLoop`: progress, resumable state every
``save_every`` steps (and on Ctrl-C), the checkpoint written with :func:`kme.save_trained`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch

import kme

from kme_hyperlib.ke_data import Item, Seq, SeqBatch, encode_conditions, encode_item
from kme_hyperlib.ke_net import KEHyperNetwork, freeze, net_config
from kme_hyperlib.trainer import TrainLoop

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest

__all__ = ["Recipe", "KETarget", "WeightTarget", "block_matrices", "LoadedEditor", "train_hypernetwork",
           "load_hypernetwork", "compute_edit", "recipe_from", "FORMAT"]

FORMAT = 1


# -- targets --------------------------------------------------------------------------------
class KETarget(Protocol):
    """The tensors a hypernetwork edits (name -> matrix) and how they reach the model."""

    def shapes(self) -> dict[str, tuple[int, int]]:
        """Each edited tensor's shape (what the hypernetwork's conditioners are built for)."""

    def current(self, model: "EditedModel") -> dict[str, torch.Tensor]:
        """Their values in the model as it is now (float32, detached, on the model's device)."""

    def overrides(self, model: "EditedModel", values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Model parameters to substitute (``functional_call``) so that the model computes with
        the target tensors at ``values``."""

    def commit(self, model: "EditedModel", handle: "EditHandle", values: dict[str, torch.Tensor]) -> None:
        """Write ``values`` through ``handle`` (exact undo, patches)."""

    def config(self) -> dict[str, Any]:
        """JSON description saved in a checkpoint."""

    def tensors(self) -> dict[str, torch.Tensor]:
        """Tensors the target needs besides the model (saved in a checkpoint)."""


def block_matrices(model: "EditedModel", layers: list[int] | None) -> list[str]:
    """Every matrix inside the chosen blocks (all blocks when ``layers`` is None): the
    release's ``include_set`` (all weights but biases, norms and embeddings) on a causal LM,
    where embeddings, the output head and the final norm lie outside the blocks."""
    n = model.num_layers
    chosen = range(n) if layers is None else sorted({model.check_layer(i) for i in layers})
    names = []
    for layer in chosen:
        prefix = model.layout.name(layer, "block") + "."
        names += [name for name, p in model.model.named_parameters()
                  if name.startswith(prefix) and p.dim() == 2 and p.is_floating_point()]
    return names


class WeightTarget:
    """Existing weight matrices, changed in place (KnowledgeEditor, SLAG)."""

    kind = "weights"

    def __init__(self, names: list[str], shapes: dict[str, tuple[int, int]]):
        self.names = list(names)
        self._shapes = dict(shapes)

    @classmethod
    def from_model(cls, model: "EditedModel", layers: list[int] | None) -> "WeightTarget":
        names = block_matrices(model, layers)
        return cls(names, {n: tuple(model.parameter(n).shape) for n in names})

    @classmethod
    def from_config(cls, model: "EditedModel", config: dict[str, Any], where: str) -> "WeightTarget":
        names = list(config.get("names") or [])
        for n in names:
            try:
                p = model.parameter(n)
            except kme.KmeError:
                raise kme.ConfigError(f"the checkpoint edits {n!r}, which this model lacks", where=where) from None
            if list(p.shape) != list(config["shapes"][n]):
                raise kme.ConfigError(f"the checkpoint edits {n!r} as shape {config['shapes'][n]}, the model's is "
                                      f"{list(p.shape)}", where=where)
        return cls(names, {n: tuple(config["shapes"][n]) for n in names})

    def shapes(self) -> dict[str, tuple[int, int]]:
        return dict(self._shapes)

    def current(self, model: "EditedModel") -> dict[str, torch.Tensor]:
        return {n: model.parameter(n).detach().float() for n in self.names}

    def overrides(self, model: "EditedModel", values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: v.to(model.parameter(n).dtype) for n, v in values.items()}

    def commit(self, model: "EditedModel", handle: "EditHandle", values: dict[str, torch.Tensor]) -> None:
        for n in self.names:
            handle.set_param(n, values[n])

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": self.names, "shapes": {n: list(s) for n, s in self._shapes.items()}}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}


# -- the recipe -----------------------------------------------------------------------------
@dataclass
class Recipe:
    """Every knob of the training recipe (the plugins expose the ones their method has)."""

    objective: Literal["lagrangian", "weighted"] = "lagrangian"
    steps: int = 1000
    batch_size: int = 16                 # locality inputs per step
    edits_per_step: int = 1
    lr: float = 3e-4
    optimizer: Literal["rmsprop", "adamw"] = "rmsprop"
    weight_decay: float = 0.0
    warmup: int = 50
    grad_clip: float | None = None
    seed: int = 0
    hidden_dim: int = 128
    condition_dim: int = 1024
    max_scale: float = 1.0
    # lagrangian (KE)
    lr_alpha: float = 0.1
    margin_kl_max: float = 1e-3
    margin_kl_min: float = 1e-5
    margin_shrink: float = 0.8
    shrink_above: float = 0.9
    label_smoothing: float = 0.1
    use_views: bool = True               # a paraphrase of the edit in the edit loss
    # weighted (SLAG)
    paraphrases: bool = False
    entailed: bool = False
    neutral: bool = False
    neutral_sources: tuple[str, ...] = ("neighbourhood", "same_subject")
    max_neutral: int = 4
    lambda_main: float = 1.0
    lambda_kl: float = 1.0
    lambda_paraphrase: float = 1.0
    lambda_entailed: float = 1.0
    lambda_neutral: float = 1.0
    update_steps: int = 1                # learned-optimizer steps per edit in training
    sequence: int = 1                    # successive edits whose updates accumulate in training
    # bookkeeping
    holdout: float = 0.05
    eval_every: int = 250
    eval_edits: int = 64
    save_every: int = 100

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d["neutral_sources"] = list(self.neutral_sources)
        return d


# -- forward passes -------------------------------------------------------------------------
def _forward(model: "EditedModel", overrides: dict[str, torch.Tensor], batch: SeqBatch) -> torch.Tensor:
    """Logits (float32) at the positions predicting each answer token: ``[tokens, vocab]``."""
    out = torch.func.functional_call(model.model, overrides, (batch.ids,),
                                     {"attention_mask": batch.mask, "use_cache": False})
    return out.logits[batch.rows, batch.positions].float()


def _edit_grads(model: "EditedModel", target: KETarget, values: dict[str, torch.Tensor],
                batch: SeqBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The edits' mean token NLL differentiated w.r.t. the target tensors at ``values`` (the
    conditioning gradient: a constant for the hypernetwork), and whether each answer token is
    already the argmax."""
    leaves = {n: v.detach().requires_grad_(True) for n, v in values.items()}
    with torch.enable_grad():
        logits = _forward(model, target.overrides(model, leaves), batch)
        loss = torch.nn.functional.cross_entropy(logits, batch.targets)
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    correct = logits.detach().argmax(-1) == batch.targets
    return ({n: (g if g is not None else torch.zeros_like(leaves[n])).detach() for n, g in zip(leaves, grads)},
            correct)


def _all_correct(correct: torch.Tensor, owner: torch.Tensor, n: int) -> list[bool]:
    return [bool(correct[owner == i].all()) for i in range(n)]


def _smoothed_nll(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    """fairseq's label-smoothed NLL (the release's ``label_smoothed_nll_loss``), token mean."""
    logp = logits.log_softmax(-1)
    nll = -logp.gather(-1, targets[:, None])[:, 0]
    if eps <= 0:
        return nll.mean()
    smooth = -logp.sum(-1)
    eps_i = eps / (logp.shape[-1] - 1)
    return ((1.0 - eps - eps_i) * nll + eps_i * smooth).mean()


def _kl(orig_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_orig ‖ p_new) per token, averaged."""
    return (orig_logp.exp() * (orig_logp - logits.log_softmax(-1))).sum(-1).mean()


# -- editing ----------------------------------------------------------------------------------
@dataclass
class LoadedEditor:
    """A trained hypernetwork and its target, ready to edit one model."""

    net: KEHyperNetwork
    target: KETarget
    config: dict[str, Any]
    path: str = ""


def compute_edit(model: "EditedModel", loaded: LoadedEditor, requests: list["EditRequest"], *,
                 update_steps: int = 1, max_repeats: int = 1) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The target values after editing ``requests`` together, and what was decided.

    ``update_steps`` (SLAG's learned-optimizer steps): recompute the gradient at the updated
    weights and apply the network again, until every edit's new object is top-1 (all its
    tokens, teacher-forced) or the steps run out. ``max_repeats`` (KE's released evaluation):
    then apply the same change 2, 3, ... times until every edit is top-1."""
    net, target = loaded.net, loaded.target
    items = [encode_item(model, r, full=False) for r in requests]
    dev = model.device
    pad = model.tokenizer.pad_token_id
    batch = SeqBatch([it.edit for it in items], pad, dev)
    cond_ids, cond_mask = encode_conditions(items, pad, dev)
    check = update_steps > 1 or max_repeats > 1
    was_training = model.model.training
    model.model.eval()
    try:
        base = target.current(model)
        delta = {n: torch.zeros_like(v) for n, v in base.items()}
        with torch.no_grad():
            condition = net.encoder(cond_ids, cond_mask)
        ok, steps_used, repeats = None, 0, 1
        for k in range(max(1, update_steps)):
            grads, _ = _edit_grads(model, target, {n: base[n] + delta[n] for n in base}, batch)
            with torch.no_grad():
                change = net.changes(condition, grads)
            delta = {n: delta[n] + change[n] for n in delta}
            steps_used = k + 1
            if check:
                ok = _edits_top1(model, target, {n: base[n] + delta[n] for n in base}, batch, len(items))
                if ok:
                    break
        if max_repeats > 1 and not ok:
            for rep in range(2, max_repeats + 1):
                repeats = rep
                ok = _edits_top1(model, target, {n: base[n] + rep * delta[n] for n in base}, batch, len(items))
                if ok:
                    break
            delta = {n: repeats * d for n, d in delta.items()}
    finally:
        model.model.train(was_training)
    values = {n: base[n] + delta[n] for n in base}
    meta = {"update_steps": steps_used, "repeats": repeats,
            "delta_norm": round(math.sqrt(sum(float(d.float().norm()) ** 2 for d in delta.values())), 6)}
    if ok is not None:
        meta["top1_on_edit_prompts"] = bool(ok)
    return values, meta


@torch.no_grad()
def _edits_top1(model: "EditedModel", target: KETarget, values: dict[str, torch.Tensor], batch: SeqBatch,
                n: int) -> bool:
    logits = _forward(model, target.overrides(model, values), batch)
    return all(_all_correct(logits.argmax(-1) == batch.targets, batch.owner, n))


# -- checkpoints ------------------------------------------------------------------------------
_CACHE: dict[tuple, LoadedEditor] = {}


def load_hypernetwork(path: str, *, editor: str, model: "EditedModel",
                      make_target: Callable[[dict[str, Any], dict[str, torch.Tensor]], KETarget],
                      where: str) -> LoadedEditor:
    """Load (once per process, model and file version) the checkpoint at ``path``; refused by
    :func:`kme.load_trained` when it was trained for another editor or base model."""
    p = Path(path).expanduser()
    weights = p / "weights.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.is_file() else None
    key = (str(p.resolve()), stamp, editor, model.base_fingerprint, str(model.device), id(model))
    if key in _CACHE:
        return _CACHE[key]
    ck = kme.load_trained(p, editor=editor, model=model, where=where)
    cfg = ck.config
    if cfg.get("format") != FORMAT:
        raise kme.ConfigError(f"checkpoint {str(p)!r} has format {cfg.get('format')!r}; this version reads "
                              f"format {FORMAT}", where=where, hint=f"retrain it: `kme train {editor} ...`")
    nc = cfg["net"]
    shapes = {n: tuple(s) for n, s in nc["shapes"].items()}
    net_tensors = {k[len("net."):]: v for k, v in ck.tensors.items() if k.startswith("net.")}
    target_tensors = {k[len("target."):]: v for k, v in ck.tensors.items() if k.startswith("target.")}
    target = make_target(cfg["target"], target_tensors)
    if target.shapes() != shapes:
        raise kme.ConfigError(f"checkpoint {str(p)!r}: its network and its target disagree on the edited tensors",
                              where=where)
    net = KEHyperNetwork(shapes, torch.zeros(tuple(nc["embedding_shape"])), hidden_dim=nc["hidden_dim"],
                         condition_dim=nc["condition_dim"], max_scale=nc["max_scale"])
    try:
        net.load_state_dict(net_tensors)
    except RuntimeError as e:
        raise kme.ConfigError(f"checkpoint {str(p)!r} does not fit its own network "
                              f"({str(e).splitlines()[0]})", where=where) from None
    freeze(net.to(model.device))
    loaded = LoadedEditor(net, target, cfg, str(p))
    if len(_CACHE) > 8:
        _CACHE.clear()
    _CACHE[key] = loaded
    return loaded


# -- training -----------------------------------------------------------------------------------
def _split(items: list[Item], holdout: float, rng: random.Random) -> tuple[list[Item], list[Item]]:
    """Hold out whole subjects (a fraction ``holdout`` of them) to measure edit success."""
    subjects = sorted({it.request.subject for it in items})
    rng.shuffle(subjects)
    n = int(round(len(subjects) * holdout)) if len(subjects) > 4 else 0
    held = set(subjects[:n])
    return [it for it in items if it.request.subject not in held], [it for it in items if it.request.subject in held]


class _Trainer:
    def __init__(self, model: "EditedModel", target: KETarget, recipe: Recipe, train: list[Item],
                 held: list[Item], net: KEHyperNetwork):
        self.model, self.target, self.r, self.train_items, self.held, self.net = \
            model, target, recipe, train, held, net
        self.dev = model.device
        self.pad = model.tokenizer.pad_token_id
        self.by_subject: dict[str, list[Item]] = {}
        for it in train:
            self.by_subject.setdefault(it.request.subject, []).append(it)
        self.locality = [it for it in train if it.old is not None]
        self.alpha = torch.nn.Parameter(torch.ones((), device=self.dev))
        self.alpha.register_hook(lambda g: -g)  # gradient ascent on the multiplier
        self.margin = recipe.margin_kl_max
        groups: list[dict[str, Any]] = [{"params": list(net.parameters()), "lr": recipe.lr,
                                         "weight_decay": recipe.weight_decay}]
        if recipe.objective == "lagrangian":
            groups.append({"params": [self.alpha], "lr": recipe.lr_alpha, "weight_decay": 0.0})
        if recipe.optimizer == "rmsprop":
            self.opt = torch.optim.RMSprop(groups, centered=True)
        else:
            self.opt = torch.optim.AdamW(groups)
        warm, total = max(0, recipe.warmup), max(1, recipe.steps)

        def lr_at(step: int) -> float:  # linear warm-up, then linear decay to 0 (the release's schedule)
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(1, total - warm))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_at)
        self.running: dict[str, torch.Tensor] | None = None
        self.in_sequence = 0

    # -- one step ------------------------------------------------------------------------------
    def _neutral(self, it: Item, rng: random.Random) -> list[Seq]:
        pool: list[Seq] = []
        if "neighbourhood" in self.r.neutral_sources:
            pool += it.neighbours
        if "same_subject" in self.r.neutral_sources:
            pool += [o.old for o in self.by_subject.get(it.request.subject, []) if o is not it and o.old is not None]
        return rng.sample(pool, min(self.r.max_neutral, len(pool)))

    def step(self, rng: random.Random) -> dict[str, float]:
        r, model, target = self.r, self.model, self.target
        edits = rng.sample(self.train_items, min(r.edits_per_step, len(self.train_items)))
        names = {it.request.case_id for it in edits}
        pool = [it for it in self.locality if it.request.case_id not in names]
        others = [it.old for it in rng.sample(pool, min(r.batch_size, len(pool)))]
        groups: dict[str, list[Seq]] = {"edit": [it.edit for it in edits], "others": others}
        if r.objective == "lagrangian":
            views = [rng.choice(it.views) for it in edits if it.views] if r.use_views else []
            groups["views"] = views
        else:
            groups["paraphrases"] = [v for it in edits for v in it.views] if r.paraphrases else []
            groups["entailed"] = [e for it in edits for e in it.entailed] if r.entailed else []
            groups["neutral"] = [s for it in edits for s in self._neutral(it, rng)] if r.neutral else []
        order = [k for k in groups if groups[k]]
        seqs = [s for k in order for s in groups[k]]
        spans, start = {}, 0
        for k in order:
            spans[k] = (start, start + len(groups[k]))
            start += len(groups[k])
        batch = SeqBatch(seqs, self.pad, self.dev)
        masks = {k: batch.token_mask(*spans[k]) for k in order}
        edit_batch = SeqBatch(groups["edit"], self.pad, self.dev)
        cond_ids, cond_mask = encode_conditions(edits, self.pad, self.dev)

        base = target.current(model)
        if self.running is not None:
            base = {n: base[n] + self.running[n] for n in base}
        with torch.no_grad():
            orig_logp = _forward(model, target.overrides(model, base), batch).log_softmax(-1)

        condition = self.net.encoder(cond_ids, cond_mask)
        delta = {n: torch.zeros_like(v) for n, v in base.items()}
        total = torch.zeros((), device=self.dev)
        stats: dict[str, float] = {}
        k_used = 0
        for k in range(max(1, r.update_steps)):
            grads, _ = _edit_grads(model, target, {n: base[n] + delta[n].detach() for n in base}, edit_batch)
            change = self.net.changes(condition, grads)
            delta = {n: delta[n].detach() + change[n] for n in delta}
            logits = _forward(model, target.overrides(model, {n: base[n] + delta[n] for n in base}), batch)
            loss, stats = self._objective(logits, orig_logp, batch, masks)
            total = total + loss
            k_used = k + 1
            em = masks["edit"]
            if bool((logits.detach()[em].argmax(-1) == batch.targets[em]).all()):
                break
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        if r.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), r.grad_clip)
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            self.alpha.clamp_(min=0.0)
        if r.sequence > 1:
            self.in_sequence += 1
            if self.in_sequence >= r.sequence:
                self.running, self.in_sequence = None, 0
            else:
                prev = self.running or {n: torch.zeros_like(v) for n, v in delta.items()}
                self.running = {n: prev[n] + delta[n].detach() for n in delta}
        stats.update(loss=float(total.detach()), update_steps_used=float(k_used))
        if r.objective == "lagrangian":
            stats["alpha"] = float(self.alpha.detach())
        return stats

    def _objective(self, logits: torch.Tensor, orig_logp: torch.Tensor, batch: SeqBatch,
                   masks: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        r = self.r
        tgt = batch.targets
        stats: dict[str, float] = {}
        if r.objective == "lagrangian":
            em = masks["edit"] | masks["views"] if "views" in masks else masks["edit"]
            cr = _smoothed_nll(logits[em], tgt[em], r.label_smoothing)
            kl = _kl(orig_logp[masks["others"]], logits[masks["others"]]) if "others" in masks \
                else torch.zeros((), device=self.dev)
            stats.update(cr=float(cr.detach()), kl=float(kl.detach()), margin=self.margin)
            return cr + self.alpha * (kl - self.margin), stats
        ce = torch.nn.functional.cross_entropy
        terms: list[tuple[str, float, torch.Tensor]] = [
            ("main", r.lambda_main, ce(logits[masks["edit"]], tgt[masks["edit"]]))]
        if "others" in masks:
            terms.append(("kl", r.lambda_kl, _kl(orig_logp[masks["others"]], logits[masks["others"]])))
        if "paraphrases" in masks:
            terms.append(("paraphrase", r.lambda_paraphrase,
                          ce(logits[masks["paraphrases"]], tgt[masks["paraphrases"]])))
        if "entailed" in masks:
            terms.append(("entailed", r.lambda_entailed, ce(logits[masks["entailed"]], tgt[masks["entailed"]])))
        if "neutral" in masks:
            terms.append(("neutral", r.lambda_neutral, _kl(orig_logp[masks["neutral"]], logits[masks["neutral"]])))
        weight = sum(w for _, w, _ in terms) or 1.0  # SLAG normalises the weights of the terms present
        for name, _, t in terms:
            stats[name] = float(t.detach())
        return sum((w / weight) * t for _, w, t in terms), stats  # type: ignore[return-value]

    # -- validation ----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Edit success (one application; the release's ``valid_flipped``) and how many
        locality inputs keep their top-1 answer, on held-out subjects."""
        if not self.held:
            return {}
        items = self.held[: self.r.eval_edits]
        loaded = LoadedEditor(self.net, self.target, {})
        flipped, kept, n_local = 0, 0, 0
        local = [it.old for it in self.locality[:32]]
        lb = SeqBatch(local, self.pad, self.dev) if local else None
        base_pred = None
        if lb is not None:
            base_pred = _forward(self.model, self.target.overrides(self.model, self.target.current(self.model)),
                                 lb).argmax(-1)
        self.net.eval()
        try:
            for it in items:
                values, _ = compute_edit(self.model, loaded, [it.request])
                flipped += int(self._top1(values, it.edit))
                if lb is not None and base_pred is not None:
                    pred = _forward(self.model, self.target.overrides(self.model, values), lb).argmax(-1)
                    kept += int((pred == base_pred).sum())
                    n_local += len(pred)
        finally:
            self.net.train()
        out = {"edit_success": round(flipped / len(items), 4)}
        if n_local:
            out["locality_kept"] = round(kept / n_local, 4)
        return out

    def _top1(self, values: dict[str, torch.Tensor], seq: Seq) -> bool:
        b = SeqBatch([seq], self.pad, self.dev)
        logits = _forward(self.model, self.target.overrides(self.model, values), b)
        return bool((logits.argmax(-1) == b.targets).all())


class _frozen:
    """The base model in eval mode with no parameter gradients while the hypernetwork trains;
    both restored after."""

    def __init__(self, model: "EditedModel"):
        self.model = model

    def __enter__(self) -> None:
        m = self.model.model
        self.training = m.training
        self.req = {n: p.requires_grad for n, p in m.named_parameters()}
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        m = self.model.model
        for n, p in m.named_parameters():
            p.requires_grad_(self.req[n])
        m.train(self.training)


class _TrainerState:
    """What resuming needs beyond the loop's own state: network, optimiser, schedule, the
    multiplier and margin, SLAG's running update, the sampler's RNG and the held-out history."""

    def __init__(self, trainer: "_Trainer", rng: random.Random):
        self.trainer, self.rng = trainer, rng
        self.validation: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        t = self.trainer
        return {"net": t.net.state_dict(), "optimizer": t.opt.state_dict(), "scheduler": t.sched.state_dict(),
                "alpha": t.alpha.detach().clone(), "margin": t.margin, "running": t.running,
                "in_sequence": t.in_sequence, "rng": self.rng.getstate(), "validation": self.validation}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        t = self.trainer
        t.net.load_state_dict(state["net"])
        t.opt.load_state_dict(state["optimizer"])
        t.sched.load_state_dict(state["scheduler"])
        with torch.no_grad():
            t.alpha.copy_(state["alpha"])
        t.margin, t.running, t.in_sequence = state["margin"], state["running"], state["in_sequence"]
        self.rng.setstate(state["rng"])
        self.validation = list(state["validation"])


def train_hypernetwork(model: "EditedModel", requests: list["EditRequest"], out_dir: str, *, editor: str,
                       target: KETarget, recipe: Recipe, stop_at: int | None = None) -> dict[str, Any] | None:
    """Train a hypernetwork for ``target`` on ``requests`` (a train split) and write the
    checkpoint to ``out_dir`` with :class:`kme_hyperlib.trainer.TrainLoop` (progress, resume
    from the training state there, saves every ``save_every`` steps and on Ctrl-C). Returns
    the checkpoint's metrics, or None when ``stop_at`` (a step) stopped it early with its
    state saved, as an interruption would."""
    where = f"editor {editor!r} training"
    if not requests:
        raise kme.ConfigError(f"{editor} needs training requests, got none", where=where,
                              hint="use a dataset with a train split (e.g. factworld)")
    usable = [r for r in requests if r.target_new]
    if len(usable) < 2:
        raise kme.ConfigError(f"{editor} needs at least 2 training requests with a new object, got {len(usable)}",
                              where=where)
    rng = random.Random(recipe.seed)
    items = [encode_item(model, r) for r in usable]
    train, held = _split(items, recipe.holdout, rng)
    if not [it for it in train if it.old is not None]:
        raise kme.ConfigError(f"{editor}: no training request states its old object (target_true); the locality "
                              "term needs the model's own answers", where=where)
    shapes = target.shapes()
    emb = model.model.get_input_embeddings().weight.detach().float().cpu()
    torch.manual_seed(recipe.seed)
    net = KEHyperNetwork(shapes, emb, hidden_dim=recipe.hidden_dim, condition_dim=recipe.condition_dim,
                         max_scale=recipe.max_scale).to(model.device)
    net.train()
    trainer = _Trainer(model, target, recipe, train, held, net)
    state = _TrainerState(trainer, rng)
    settings = {"recipe": recipe.record(), "target": target.config(), "requests": len(usable),
                "base": model.base_fingerprint}
    loop = TrainLoop(out_dir, steps=recipe.steps, desc=f"train {editor}", stateful={"ke": state}, config=settings,
                     save_every=recipe.save_every, stop_after=stop_at, ema=0.98)

    def step_fn(step: int) -> dict[str, float]:
        stats = trainer.step(rng)
        if not math.isfinite(stats["loss"]):
            raise kme.EditFailedError(f"{editor} training diverged at step {step + 1} (loss {stats['loss']})",
                                      hint="lower lr or max_scale")
        done = step + 1
        if recipe.eval_every and (done % recipe.eval_every == 0 or done == recipe.steps):
            val = trainer.validate()
            if val:
                if recipe.objective == "lagrangian" and val.get("edit_success", 0) > recipe.shrink_above:
                    trainer.margin = max(trainer.margin * recipe.margin_shrink, recipe.margin_kl_min)
                if recipe.objective == "lagrangian":
                    val.update(margin=trainer.margin, alpha=round(float(trainer.alpha.detach()), 5))
                state.validation.append({"step": done, **val})
        return stats

    with model.suspended(), _frozen(model):  # train against the unedited base model
        result = loop.run(step_fn)
    if not result.finished:
        return None
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"target.{k}": v for k, v in target.tensors().items()})
    metrics = {"train_requests": len(train), "held_out_requests": len(held), "validation": state.validation,
               "held_out": state.validation[-1] if state.validation else {},
               "hypernetwork_parameters": sum(p.numel() for p in net.parameters())}
    if model.device.type == "cuda":
        metrics["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(model.device) / 2**20, 1)
    config = {"format": FORMAT, "net": net_config(shapes, tuple(emb.shape), hidden_dim=recipe.hidden_dim,
                                                   condition_dim=recipe.condition_dim, max_scale=recipe.max_scale),
              "target": target.config(), "recipe": recipe.record()}
    loop.finish(editor=editor, model=model, tensors=tensors, config=config, result=result, metrics=metrics)
    return {**result.metrics(), **metrics}


def recipe_from(params: Any, **fixed: Any) -> Recipe:
    """A :class:`Recipe` from a plugin's training params (fields of the same name) and the
    method's fixed choices."""
    values = {k: getattr(params, k) for k in Recipe.__dataclass_fields__ if hasattr(params, k)}
    values.update(fixed)
    if "neutral_sources" in values:
        values["neutral_sources"] = tuple(values["neutral_sources"])
    return Recipe(**values)

