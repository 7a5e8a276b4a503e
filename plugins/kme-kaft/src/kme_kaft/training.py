"""The KAFT training loop: KAFT rows and rehearsal text, AdamW, resumable, on a copy of the
base model (the given model is never changed), saved as a new ``from_pretrained`` folder.

Rows are tokenised the way ``EditedModel.score`` tokenises a prompt and its target: the
context up to an answer as one string (special tokens on the first piece only), each answer
as ``join_target`` continuation tokens, so the model is trained on exactly what it is scored on.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kme
from kme import ConfigError, EditRequest

from kme_kaft.mix import MixConfig, Pools, Segment, kaft_row

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel

__all__ = ["TrainConfig", "encode_row", "train_kaft", "MANIFEST", "KIND"]

MANIFEST = "manifest.json"
KIND = "base-model"
#: files a model folder may carry beside its weights that describe what it knows (the fact
#: world's ``world.json``): copied so the new base is measured against the same world.
SIDE_FILES = ("world.json",)


@dataclass
class TrainConfig:
    """Everything that decides the trained base (recorded in its manifest)."""

    steps: int = 300
    lr: float = 1e-3
    warmup: int = 20
    min_lr_ratio: float = 0.1
    rows: int = 8
    rehearsal_every: int = 2
    rehearsal_rows: int = 16
    corpus: str = "auto"
    max_length: int = 512
    grad_clip: float = 1.0
    save_every: int = 100
    seed: int = 0
    mix: MixConfig = field(default_factory=MixConfig)

    def key(self, base: str, requests: Sequence[EditRequest]) -> str:
        """What a resumed training must share with the interrupted one."""
        ids = [str(r.case_id) for r in requests]
        blob = json.dumps({"config": asdict(self), "base": base, "requests": ids}, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def encode_row(tokenizer: Any, row: list[Segment], max_length: int) -> tuple[list[int], list[int]] | None:
    """Token ids and labels (-100 where no loss) of a row; None when it is longer than
    ``max_length`` or has no learned token left."""
    ids: list[int] = []
    labels: list[int] = []
    pending = ""
    for text, learn in row:
        if not learn:
            pending += text
            continue
        if pending:
            ctx = tokenizer(pending, add_special_tokens=not ids)["input_ids"]
            ids += ctx
            labels += [-100] * len(ctx)
            pending = ""
        ans = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += ans
        labels += ans
    if len(ids) > max_length or all(x == -100 for x in labels):
        return None
    return ids, labels


def _rehearsal_texts(model: "EditedModel", cfg: TrainConfig, requests: Sequence[EditRequest]) -> list[str]:
    """Plain true-fact text: the model's default corpus (or a named one), else the requests'
    true facts in every phrasing they carry."""
    corpus = None
    if cfg.corpus == "auto":
        corpus = kme.corpus_for(model.pm, model.identity)
    elif cfg.corpus != "none":
        corpus = model.pm.corpora.get(cfg.corpus, where="kaft params.corpus")
    if corpus is not None:
        return [t for t in corpus.records() if t.strip()]
    if cfg.corpus == "none":
        return []
    out = []
    for r in requests:
        if r.target_true:
            out += [p + kme.join_target(p, r.target_true) for p in (r.text, *r.paraphrase_prompts)]
        out += [p.prompt + kme.join_target(p.prompt, p.target) for p in r.neighborhood]
    return out


def _batch(seqs: list[tuple[list[int], list[int]]], pad: int,
           device: Any) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """Right-padded ids, attention mask and labels (positions stay those of one row alone)."""
    import torch

    width = max(len(i) for i, _ in seqs)
    ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in seqs], device=device)
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in seqs], device=device)
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in seqs], device=device)
    return ids, mask, labels


def _loss(net: Any, ids: "torch.Tensor", mask: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    import torch

    logits = net(input_ids=ids, attention_mask=mask).logits.float()
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                             ignore_index=-100)


def _kaft_batch(tok: Any, pools: Pools, cfg: TrainConfig, rng: random.Random,
                limit: int) -> list[tuple[list[int], list[int]]]:
    out = []
    for _ in range(cfg.rows * 20):
        enc = encode_row(tok, kaft_row(pools, cfg.mix, rng), limit)
        if enc is None:  # too long for the model: the same draw without demonstrations
            enc = encode_row(tok, kaft_row(pools, cfg.mix, rng, n_demos=0), limit)
        if enc is not None:
            out.append(enc)
        if len(out) == cfg.rows:
            return out
    raise ConfigError(f"KAFT rows do not fit in {limit} tokens", where="kaft params.max_length",
                      hint="raise max_length or lower mix.max_demos")


def _rehearsal_batch(tok: Any, texts: list[str], cfg: TrainConfig, rng: random.Random,
                     limit: int) -> list[tuple[list[int], list[int]]]:
    out = []
    for t in rng.sample(texts, min(cfg.rehearsal_rows, len(texts))):
        ids = tok(t, add_special_tokens=True)["input_ids"][:limit]
        out.append((ids, list(ids)))
    return out


def train_kaft(model: "EditedModel", requests: Sequence[EditRequest], out_dir: str | Path,
               cfg: TrainConfig) -> dict[str, Any]:
    """Train a copy of ``model`` on the KAFT mix and save it to ``out_dir`` as a base model
    folder with a manifest naming ``model``'s fingerprint; returns the training metrics."""
    import torch

    out = Path(out_dir)
    pools = Pools.of(requests, phrasings=cfg.mix.phrasings)
    if len(pools.requests) < 2:
        raise ConfigError(f"KAFT needs at least 2 train requests with a true object (target_true), got "
                          f"{len(pools.requests)}", where="--dataset",
                          hint="use a dataset whose train split records the true object (e.g. factworld)")
    tok = model.tokenizer
    limit = min(cfg.max_length, getattr(model.model.config, "n_positions", None)
                or getattr(model.model.config, "max_position_embeddings", cfg.max_length))
    texts = _rehearsal_texts(model, cfg, requests) if cfg.rehearsal_every else []
    key = cfg.key(model.base_fingerprint, requests)

    net = copy.deepcopy(model.model)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    step0, history, seconds0 = 0, [], 0.0
    state = kme.load_train_state(out)
    if state is not None:
        if state.get("key") != key:
            raise ConfigError(f"{str(out)!r} holds a KAFT training of another base model, settings or requests "
                              f"(key {state.get('key')}, this one {key})", where="--out",
                              hint="resume with the same --model, --dataset, --limit and --params, or --overwrite")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        step0, history, seconds0 = state["step"], state["history"], state["seconds"]

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    def save_state(step: int, rngs: tuple[Any, Any] | None = None) -> None:
        py_rng, torch_rng = rngs or (rng.getstate(), torch.get_rng_state())
        kme.save_train_state(out, {"key": key, "step": step, "model": net.state_dict(),
                                   "optimizer": opt.state_dict(), "rng": py_rng, "torch_rng": torch_rng,
                                   "history": history, "seconds": seconds0 + time.perf_counter() - t0})

    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    device = model.device
    t0 = time.perf_counter()
    kaft_loss = reh_loss = None
    step = step0
    before = (rng.getstate(), torch.get_rng_state())  # the RNGs as the current step found them
    try:
        for step, bar in kme.train_progress(cfg.steps, desc="KAFT", start=step0):
            before = (rng.getstate(), torch.get_rng_state())
            rehearse = bool(texts) and cfg.rehearsal_every > 0 and step % cfg.rehearsal_every == cfg.rehearsal_every - 1
            seqs = (_rehearsal_batch(tok, texts, cfg, rng, limit) if rehearse
                    else _kaft_batch(tok, pools, cfg, rng, limit))
            loss = _loss(net, *_batch(seqs, pad, device))
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise kme.EditFailedError(f"KAFT loss is {value} at step {step + 1}", hint="lower params.lr")
            if rehearse:
                reh_loss = value if reh_loss is None else 0.9 * reh_loss + 0.1 * value
            else:
                kaft_loss = value if kaft_loss is None else 0.9 * kaft_loss + 0.1 * value
            bar.set_postfix(kaft=f"{kaft_loss or 0:.3f}", rehearsal=f"{reh_loss or 0:.3f}")
            if (step + 1) % 50 == 0 or step + 1 == cfg.steps:
                history.append({"step": step + 1, "kaft_loss": round(kaft_loss or 0, 4),
                                "rehearsal_loss": round(reh_loss or 0, 4),
                                "seconds": round(seconds0 + time.perf_counter() - t0, 1)})
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                save_state(step + 1)
    except KeyboardInterrupt:  # the step under way is redone on resume, from the same draws
        save_state(step, before)
        raise
    net.eval()
    seconds = round(seconds0 + time.perf_counter() - t0, 1)
    metrics = {"steps": cfg.steps, "kaft_loss": history[-1]["kaft_loss"] if history else None,
               "rehearsal_loss": history[-1]["rehearsal_loss"] if history else None, "train_seconds": seconds,
               "train_requests": len(pools.requests), "rehearsal_texts": len(texts), "history": history}
    save_base(model, net, out, cfg, metrics)
    kme.clear_train_state(out)
    return metrics


def save_base(model: "EditedModel", net: Any, out: Path, cfg: TrainConfig, metrics: dict[str, Any]) -> None:
    """``save_pretrained`` weights and tokenizer, side files of the base folder, then the
    manifest last (a folder with a manifest is finished)."""
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out, safe_serialization=True)
    model.tokenizer.save_pretrained(out)
    base_dir = Path(kme.resolve_model_path(model.source, model.pm)).expanduser()
    for name in SIDE_FILES:
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, out / name)
    manifest = {"format": 1, "editor": "kaft", "kind": KIND, "base_fingerprint": model.base_fingerprint,
                "base_model": model.source, "config": asdict(cfg), "metrics": metrics,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=list) + "\n")
