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

import json
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from kme import ConfigError, join_target, pad_sequences

from kme_serac.checkpoint import CLASSIFIER_FORMAT, CONTEXT_FORMAT, EDIT_FORMAT, FORMAT_VERSION, SeracCheckpoint

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditRequest

__all__ = ["TrainConfig", "train_serac", "edit_descriptor", "scope_pairs"]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classifier_steps: int = Field(2500, ge=0)
    classifier_lr: float = Field(5e-4, gt=0)
    counterfactual_steps: int = Field(1500, ge=0)
    counterfactual_lr: float = Field(3e-4, gt=0)
    batch_size: int = Field(32, ge=1)
    negatives_per_positive: int = Field(1, ge=1)
    holdout: float = Field(0.1, ge=0, lt=1, description="share of training requests kept aside to measure the "
                                                        "trained models")
    seed: int = 0


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


def train_serac(base: "EditedModel", requests: list["EditRequest"], out: str | Path, cfg: TrainConfig | None = None,
                log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train the scope classifier and the counterfactual model from ``base`` on ``requests``
    (a train split) and save a checkpoint folder to ``out``; returns the training record."""
    import torch
    from transformers import AutoModelForSequenceClassification

    cfg = cfg or TrainConfig()
    if not requests:
        raise ConfigError("SERAC needs training requests, got none", hint="use a dataset with a train split")
    if not any(r.paraphrase_prompts or r.neighborhood for r in requests):
        raise ConfigError("the training requests have no paraphrases or neighbourhood prompts; SERAC's scope "
                          "classifier cannot learn what is in and out of scope from them")
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_reqs, held_reqs = _hold_out(requests, cfg.holdout, rng)
    pos, neg = scope_pairs(train_reqs, rng)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    with base.suspended():  # start both models from the unedited base weights
        src = tmp / "base"
        base.model.save_pretrained(str(src))
        base.tokenizer.save_pretrained(str(src))
    tok = base.tokenizer

    # -- scope classifier -------------------------------------------------------------------
    clf = AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=1)
    clf.config.pad_token_id = tok.pad_token_id
    clf_loss = _train_classifier(clf, tok, pos, neg, cfg, rng, log)
    clf.save_pretrained(str(tmp / "classifier"))
    tok.save_pretrained(str(tmp / "classifier"))

    # -- counterfactual model ---------------------------------------------------------------
    from transformers import AutoModelForCausalLM

    cf = AutoModelForCausalLM.from_pretrained(str(src))
    cf_loss = _train_counterfactual(cf, tok, pos, cfg, rng, log)
    cf.save_pretrained(str(tmp / "counterfactual"))
    tok.save_pretrained(str(tmp / "counterfactual"))
    shutil.rmtree(src)

    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "classifier_format": CLASSIFIER_FORMAT,
        "context_format": CONTEXT_FORMAT,
        "threshold": 0.5,
        "base_model": {"source": base.source, "fingerprint": base.base_fingerprint},
        "training": {**cfg.model_dump(), "requests": len(train_reqs), "held_out_requests": len(held_reqs),
                     "in_scope_pairs": len(pos), "out_of_scope_pairs": len(neg),
                     "classifier_final_loss": clf_loss, "counterfactual_final_loss": cf_loss,
                     "seconds": round(time.perf_counter() - t0, 1)},
    }
    (tmp / "serac.json").write_text(json.dumps(record, indent=2))
    if held_reqs:
        ck = SeracCheckpoint.load(tmp, base.pm)
        record["held_out"] = _measure(ck, held_reqs, rng, base.pm)
        SeracCheckpoint.forget(tmp)
        (tmp / "serac.json").write_text(json.dumps(record, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    SeracCheckpoint.forget(out)
    return record


def _train_classifier(clf: "torch.nn.Module", tok: Any, pos: list, neg: list, cfg: TrainConfig,
                      rng: random.Random, log: Callable[[str], None]) -> float | None:
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
        return _fit(clf, cfg.classifier_lr, cfg.classifier_steps, batch_loss, log, "scope classifier")
    finally:
        tok.padding_side = side


def _train_counterfactual(cf: "torch.nn.Module", tok: Any, pos: list, cfg: TrainConfig, rng: random.Random,
                          log: Callable[[str], None]) -> float | None:
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

    return _fit(cf, cfg.counterfactual_lr, cfg.counterfactual_steps, batch_loss, log, "counterfactual model")


def _fit(module: "torch.nn.Module", lr: float, steps: int, batch_loss: Callable[[], "torch.Tensor"],
         log: Callable[[str], None], what: str) -> float | None:
    """``steps`` AdamW steps (no weight decay, gradients clipped to norm 1) on every parameter
    of ``module`` in train mode, each on a fresh ``batch_loss()``; eval mode after. Returns the
    loss's moving average (``None`` without steps)."""
    import torch

    if steps == 0:
        return None
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    module.train()
    ema = None
    try:
        for step in range(1, steps + 1):
            loss = batch_loss()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            opt.step()
            lv = float(loss.detach())
            ema = lv if ema is None else 0.95 * ema + 0.05 * lv
            if step % 100 == 0 or step == steps:
                log(f"{what} step {step}/{steps} loss {ema:.4f}")
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

