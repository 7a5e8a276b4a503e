"""SERAC's training recipe on a dataset's train split (Mitchell et al., 2022, section 3).

From every training request e = (prompt -> new object):

* **in scope** of e: its prompt and its paraphrases (the answer is e's new object);
* **out of scope**, hard: its neighbourhood prompts (same relation, other subjects), its own
  in-scope phrasings with another subject's name (only the subject tells them apart) and the
  prompts of other requests about the same subject (other relations); easy: prompts of
  random other requests.

The **scope classifier** (a sequence classifier initialised from the base model, reading
"Edit: e. Query: x") is trained with binary cross-entropy on balanced in/out pairs. The
**counterfactual model** (a copy of the base model) is fine-tuned to answer an in-scope query
given the edit in context, the loss on the answer's tokens only. The base model itself is
never trained.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

import kme
from kme import ConfigError, join_target, pad_sequences

from kme_serac.checkpoint import (
    CLASSIFIER,
    CLASSIFIER_FORMAT,
    CONTEXT_FORMAT,
    COUNTERFACTUAL,
    EDIT_FORMAT,
    EDITOR,
    FORMAT_VERSION,
    SeracCheckpoint,
    new_classifier,
    new_counterfactual,
    state_tensors,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditRequest

__all__ = ["TrainConfig", "train_serac", "edit_descriptor", "scope_pairs"]


class TrainConfig(BaseModel):
    """SERAC's training settings; the ``serac`` editor's params of the same names set them
    (``kme train serac --params classifier_steps=500``)."""

    model_config = ConfigDict(extra="forbid")
    classifier_steps: int = Field(2500, ge=0, description="training: scope classifier AdamW steps")
    classifier_lr: float = Field(5e-4, gt=0, description="training: scope classifier learning rate")
    counterfactual_steps: int = Field(1500, ge=0, description="training: counterfactual model AdamW steps")
    counterfactual_lr: float = Field(3e-4, gt=0, description="training: counterfactual model learning rate")
    batch_size: int = Field(32, ge=1, description="training: examples per step")
    negatives_per_positive: int = Field(1, ge=1, description="training: out-of-scope pairs per in-scope pair "
                                                             "in a classifier batch")
    holdout: float = Field(0.1, ge=0, lt=1, description="training: share of training subjects kept aside to "
                                                        "measure the trained models")
    seed: int = Field(0, description="training: seed of the hold-out split, batch sampling and initialisation")
    save_every: int = Field(200, ge=1, description="training: steps between saves of the resumable state")


def edit_descriptor(r: "EditRequest") -> str:
    return EDIT_FORMAT.format(prompt=r.text, answer=join_target(r.text, r.target_new))


def scope_pairs(reqs: list["EditRequest"], rng: random.Random) -> tuple[list[tuple[str, str, str]],
                                                                           list[tuple[str, str]]]:
    """(edit, in-scope query, answer) triples and (edit, out-of-scope query) pairs."""
    by_subject: dict[str, list[EditRequest]] = defaultdict(list)
    for r in reqs:
        by_subject[r.subject].append(r)
    pos: list[tuple[str, str, str]] = []
    neg: list[tuple[str, str]] = []
    all_prompts = [r.text for r in reqs]
    subjects = sorted(by_subject)
    for r in reqs:
        e = edit_descriptor(r)
        in_scope = [r.text, *r.paraphrase_prompts]
        pos += [(e, q, r.target_new) for q in in_scope]
        neg += [(e, n.prompt) for n in r.neighborhood]
        # the same phrasing about another subject: only the subject tells them apart
        others = [s for s in subjects if s != r.subject and r.subject not in s and s not in r.subject]
        for q in in_scope:
            if others and r.subject in q:
                neg.append((e, q.replace(r.subject, rng.choice(others))))
        for other in by_subject[r.subject]:
            if other is not r and other.relation != r.relation:
                neg += [(e, q) for q in [other.text, *other.paraphrase_prompts][:2]]
        neg += [(e, q) for q in rng.sample(all_prompts, min(2, len(all_prompts))) if q != r.text]
    return pos, neg


def _hold_out(reqs: list["EditRequest"], share: float, rng: random.Random) -> tuple[list, list]:
    subjects = sorted({r.subject for r in reqs})
    rng.shuffle(subjects)
    n = int(round(len(subjects) * share))
    held = set(subjects[:n])
    return [r for r in reqs if r.subject not in held], [r for r in reqs if r.subject in held]


def _run_key(base: "EditedModel", requests: list["EditRequest"], cfg: TrainConfig) -> str:
    """What a saved training state must match to be resumed: the base model, the settings
    (all but how often to save) and the training requests."""
    h = hashlib.sha256(json.dumps([base.base_fingerprint, cfg.model_dump(exclude={"save_every"}),
                                   [r.model_dump(mode="json") for r in requests]], sort_keys=True,
                                  default=str).encode())
    return h.hexdigest()[:24]


def train_serac(base: "EditedModel", requests: list["EditRequest"], out: str | Path, cfg: TrainConfig | None = None,
                log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train the scope classifier and the counterfactual model from ``base`` on ``requests``
    (a train split) and write a checkpoint folder (``kme.save_trained``) to ``out``; returns
    the manifest. Every ``save_every`` steps, and on an interrupt, the progress goes to
    ``out/train-state.pt``; a call on the same ``out`` with the same base, settings and
    requests continues from it (another run's state is refused)."""
    import torch

    cfg = cfg or TrainConfig()
    if not requests:
        raise ConfigError("SERAC needs training requests, got none", hint="use a dataset with a train split")
    if not any(r.paraphrase_prompts or r.neighborhood for r in requests):
        raise ConfigError("the training requests have no paraphrases or neighbourhood prompts; SERAC's scope "
                          "classifier cannot learn what is in and out of scope from them")
    out = Path(out)
    key = _run_key(base, requests, cfg)
    state = kme.load_train_state(out)
    if state is not None and state.get("run") != key:
        raise ConfigError(f"{str(out / 'train-state.pt')!r} holds the progress of another SERAC training run "
                          "(another base model, other settings or other training requests)", where=str(out),
                          hint="train into another --out, or start this one over with --overwrite")
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_reqs, held_reqs = _hold_out(requests, cfg.holdout, rng)
    pos, neg = scope_pairs(train_reqs, rng)
    t0 = time.perf_counter()
    prior = float(state.get("seconds", 0.0)) if state is not None else 0.0
    with base.suspended():  # start both models from the unedited base weights
        with torch.random.fork_rng(devices=[]):  # their random init is overwritten: draw nothing
            clf = new_classifier(base)
            cf = new_counterfactual(base)
        clf.base_model.load_state_dict(base.model.base_model.state_dict())
        cf.load_state_dict(base.model.state_dict())
    for child in clf.children():  # the one-logit head: initialised as from_pretrained initialises it
        if child is not clf.base_model:
            clf._init_weights(child)
    tok = copy.deepcopy(base.tokenizer)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    done: dict[str, Any] = {}  # finished phases: their weights and final loss
    if state is not None:
        done = state["done"]
        log(f"resuming from {out / 'train-state.pt'} ({state['phase']} step {state['fit']['step']})"
            if state.get("fit") else f"resuming from {out / 'train-state.pt'}")

    def saver(phase: str) -> Callable[[dict[str, Any]], None]:
        return lambda fit: kme.save_train_state(out, {"run": key, "phase": phase, "fit": fit, "done": done,
                                                      "seconds": prior + time.perf_counter() - t0})

    def resumed(phase: str) -> dict[str, Any] | None:
        return state["fit"] if state is not None and state.get("phase") == phase else None

    # -- scope classifier -------------------------------------------------------------------
    if "classifier" in done:
        clf.load_state_dict(done["classifier"]["weights"])
        rng.setstate(done["classifier"]["rng"])
        torch.set_rng_state(done["classifier"]["torch_rng"])
    else:
        clf_loss = _train_classifier(clf, tok, pos, neg, cfg, rng, log, resumed("classifier"), saver("classifier"))
        done["classifier"] = {"weights": clf.state_dict(), "loss": clf_loss, "rng": rng.getstate(),
                              "torch_rng": torch.get_rng_state()}
        kme.save_train_state(out, {"run": key, "phase": "counterfactual", "fit": None, "done": done,
                                   "seconds": prior + time.perf_counter() - t0})

    # -- counterfactual model ---------------------------------------------------------------
    cf_loss = _train_counterfactual(cf, tok, pos, cfg, rng, log, resumed("counterfactual"),
                                    saver("counterfactual"))

    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "edit_format": EDIT_FORMAT,
        "classifier_format": CLASSIFIER_FORMAT,
        "context_format": CONTEXT_FORMAT,
        "threshold": 0.5,
        "training": cfg.model_dump(),
    }
    metrics: dict[str, Any] = {
        "requests": len(train_reqs), "held_out_requests": len(held_reqs), "in_scope_pairs": len(pos),
        "out_of_scope_pairs": len(neg), "classifier_final_loss": done["classifier"]["loss"],
        "counterfactual_final_loss": cf_loss,
        "seconds": round(prior + time.perf_counter() - t0, 1),
    }
    if held_reqs:
        ck = SeracCheckpoint.from_modules(out, config, base, clf, cf)
        metrics["held_out"] = _measure(ck, held_reqs, rng, base.pm)
    tensors = {**state_tensors(clf, CLASSIFIER), **state_tensors(cf, COUNTERFACTUAL)}
    kme.save_trained(out, editor=EDITOR, model=base, tensors=tensors, config=config, metrics=metrics)
    kme.clear_train_state(out)
    SeracCheckpoint.forget(out)
    return kme.read_trained_manifest(out)


def _train_classifier(clf: "torch.nn.Module", tok: Any, pos: list, neg: list, cfg: TrainConfig,
                      rng: random.Random, log: Callable[[str], None], resume: dict[str, Any] | None = None,
                      save: Callable[[dict[str, Any]], None] | None = None) -> float | None:
    import torch

    half = max(1, cfg.batch_size // (1 + cfg.negatives_per_positive))

    def batch_loss() -> "torch.Tensor":
        batch = [(e, q, 1.0) for e, q, _ in rng.sample(pos, min(half, len(pos)))]
        batch += [(e, q, 0.0) for e, q in rng.sample(neg, min(half * cfg.negatives_per_positive, len(neg)))]
        enc = tok([CLASSIFIER_FORMAT.format(edit=e, query=q) for e, q, _ in batch], return_tensors="pt",
                  padding=True)
        y = torch.tensor([b[2] for b in batch])
        logits = clf(**enc).logits[:, 0].float()
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y)

    side = tok.padding_side
    tok.padding_side = "right"
    try:
        return _fit(clf, cfg.classifier_lr, cfg.classifier_steps, batch_loss, log, "scope classifier", rng,
                    cfg.save_every, resume, save)
    finally:
        tok.padding_side = side


def _train_counterfactual(cf: "torch.nn.Module", tok: Any, pos: list, cfg: TrainConfig, rng: random.Random,
                          log: Callable[[str], None], resume: dict[str, Any] | None = None,
                          save: Callable[[dict[str, Any]], None] | None = None) -> float | None:
    import torch

    def batch_loss() -> "torch.Tensor":
        seqs = []
        for e, q, a in rng.sample(pos, min(cfg.batch_size, len(pos))):
            prompt = CONTEXT_FORMAT.format(edit=e) + q
            p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
            a_ids = tok(join_target(q, a), add_special_tokens=False)["input_ids"]
            seqs.append((p_ids, a_ids))
        ids, mask = pad_sequences([a + b for a, b in seqs], tok.pad_token_id)
        labels = torch.full(ids.shape, -100, dtype=torch.long)
        for i, (a, b) in enumerate(seqs):
            labels[i, len(a): len(a) + len(b)] = torch.tensor(b)
        logits = cf(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100)

    return _fit(cf, cfg.counterfactual_lr, cfg.counterfactual_steps, batch_loss, log, "counterfactual model", rng,
                cfg.save_every, resume, save)


def _fit(module: "torch.nn.Module", lr: float, steps: int, batch_loss: Callable[[], "torch.Tensor"],
         log: Callable[[str], None], what: str, rng: random.Random | None = None, save_every: int = 0,
         resume: dict[str, Any] | None = None, save: Callable[[dict[str, Any]], None] | None = None) -> float | None:
    """``steps`` AdamW steps (no weight decay, gradients clipped to norm 1) on every parameter
    of ``module`` in train mode, each on a fresh ``batch_loss()``; eval mode after. Returns the
    loss's moving average (``None`` without steps).

    ``save(fit)`` receives the resumable state (step, weights, optimiser, moving average, the
    sampling and torch RNGs) every ``save_every`` steps and on an interrupt; ``resume`` is such
    a state to continue from, so that a resumed fit ends where an uninterrupted one would."""
    import torch

    if steps == 0:
        return None
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    ema = None
    start = 0
    if resume is not None:
        module.load_state_dict(resume["weights"])
        opt.load_state_dict(resume["optimizer"])
        ema, start = resume["ema"], resume["step"]
        if rng is not None:
            rng.setstate(resume["rng"])
        torch.set_rng_state(resume["torch_rng"])

    def snapshot(step: int) -> dict[str, Any]:
        return {"step": step, "weights": module.state_dict(), "optimizer": opt.state_dict(), "ema": ema,
                "rng": rng.getstate() if rng is not None else None, "torch_rng": torch.get_rng_state()}

    module.train()
    completed = start
    try:
        for step, bar in kme.train_progress(steps, desc=f"SERAC {what}", start=start):
            loss = batch_loss()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            opt.step()
            lv = float(loss.detach())
            ema = lv if ema is None else 0.95 * ema + 0.05 * lv
            completed = step + 1
            bar.set_postfix(loss=f"{ema:.4f}")
            if (step + 1) % 100 == 0 or step + 1 == steps:
                log(f"{what} step {step + 1}/{steps} loss {ema:.4f}")
            if save is not None and save_every and (step + 1) % save_every == 0 and step + 1 < steps:
                save(snapshot(completed))
    except KeyboardInterrupt:  # keep what was done: the next call on the same folder resumes
        if save is not None:
            save(snapshot(completed))
        raise
    finally:
        module.eval()
    return round(ema, 5) if ema is not None else None


def _measure(ck: SeracCheckpoint, reqs: list["EditRequest"], rng: random.Random, pm: Any) -> dict[str, Any]:
    """Scope accuracy and counterfactual top-1 accuracy on held-out training subjects."""
    pos, neg = scope_pairs(reqs, rng)
    pos = pos[:400]
    neg = neg[:400]
    p_pos = ck.scope_probs([(e, q) for e, q, _ in pos])
    p_neg = ck.scope_probs(neg)
    router = ck.router(pm)
    scores = router.score([ck.context(e) + q for e, q, _ in pos], [a for _, _, a in pos])
    return {"in_scope_recall": round(sum(p >= 0.5 for p in p_pos) / max(1, len(p_pos)), 4),
            "out_of_scope_rejection": round(sum(p < 0.5 for p in p_neg) / max(1, len(p_neg)), 4),
            "counterfactual_accuracy": round(sum(s.all_correct for s in scores) / max(1, len(scores)), 4),
            "pairs": {"in_scope": len(pos), "out_of_scope": len(neg)}}

