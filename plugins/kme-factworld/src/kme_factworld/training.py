"""Training the fact world's GPT-2 model with plain PyTorch on CPU.

Two kinds of batches alternate:

* fact rows (short, packed): true facts in all their trained phrasings and contexts, each
  document starting with ``<|endoftext|>``; they decide memorisation, which is driven by
  the number of optimiser steps rather than by epochs;
* episode rows (up to ``n_positions`` tokens): fact documents, then one context episode at
  the end, so facts are also recalled late in a long context and the model learns to answer
  from a fact stated earlier in its context.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kme_factworld.text import Doc, doc_text, episode, fact_documents
from kme_factworld.world import World

__all__ = ["TrainConfig", "TRAIN_CONFIGS", "AUTOCAST", "check_autocast", "train", "build_model_config",
           "save_checkpoint", "tokenizer_texts", "RESUME_FILE"]

#: ``TrainConfig.autocast`` values: the dtype the forward and backward passes compute in
#: ("none": float32 throughout; "bfloat16": ~1.45x faster per step on a CPU with AVX512-BF16).
AUTOCAST: tuple[str, ...] = ("none", "bfloat16")


def check_autocast(value: str) -> None:
    """Refuse an ``autocast`` value other than :data:`AUTOCAST`'s, before anything is written."""
    from kme import ConfigError

    if value not in AUTOCAST:
        raise ConfigError(f"training setting autocast={value!r} is not one of {', '.join(AUTOCAST)}",
                          where="kme factworld train --set")


#: Training state written every ``checkpoint_every`` steps into the output directory; a run
#: started with ``resume=True`` continues from it, step for step as if never stopped.
RESUME_FILE = "resume-state.pt"


@dataclass
class TrainConfig:
    """Everything that decides the trained checkpoint (saved next to it)."""

    seed: int = 0
    world: str = "default"  # a shape of kme_factworld.world.WORLD_SHAPES
    vocab_size: int = 3072
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_inner: int | None = None  # MLP width (None: 4 * n_embd, GPT-2's)
    n_positions: int = 512
    steps: int = 2600
    fact_rows: int = 16
    fact_row_len: int = 128
    packing: str = "bucketed"  # "packed": documents share rows; "bucketed": one document per row
    episode_every: int = 3  # every n-th step is an episode step
    episode_rows: int = 4
    subject_loss: bool = True  # False: fact sentences carry no loss on the subject's name
    profiles: int = 0  # profile lines per subject per pass (name, then its objects: text.profile)
    autocast: str = "none"  # "bfloat16": forward/backward under torch.autocast (weights and optimiser stay float32)
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    threads: int = 2
    checkpoint_every: int = 0  # steps between resumable training states (0: none)
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    #: fields that may differ between a run and its resumption (they do not change the result)
    RUNTIME: ClassVar[tuple[str, ...]] = ("threads", "checkpoint_every", "device")


#: The training of each shipped world's model. ``deep``: sized by measurement
#: (docs/factworld.md, "The deep fact world").
TRAIN_CONFIGS: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "deep": TrainConfig(world="deep", vocab_size=6144, n_layer=8, n_embd=192, n_head=6, steps=8000, lr=3e-3,
                        warmup=200, episode_every=4, checkpoint_every=200, subject_loss=False,
                        autocast="bfloat16"),
}


def build_model_config(cfg: TrainConfig, vocab_size: int, bos_id: int) -> Any:
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                      n_head=cfg.n_head, n_inner=cfg.n_inner, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=bos_id, eos_token_id=bos_id, pad_token_id=bos_id, tie_word_embeddings=True)


class _Encoder:
    """Tokenises segments (cached: prompts and objects repeat a lot)."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer.backend_tokenizer
        self.cache: dict[str, list[int]] = {}
        self.bos = tokenizer.bos_token_id

    def encode_docs(self, docs: list[Doc]) -> list[tuple[list[int], list[int]]]:
        missing = sorted({t for d in docs for t, _ in d if t not in self.cache})
        if missing:
            for t, enc in zip(missing, self.tok.encode_batch(missing, add_special_tokens=False)):
                self.cache[t] = enc.ids
        out = []
        for d in docs:
            ids, labels = [self.bos], [self.bos]
            for t, learn in d:
                seg = self.cache[t]
                ids.extend(seg)
                labels.extend(seg if learn else [-100] * len(seg))
            out.append((ids, labels))
        return out


def _pack(encoded: list[tuple[list[int], list[int]]], row_len: int, pad: int) -> tuple[list[list[int]], list[list[int]]]:
    rows, labs = [], []
    cur, cur_l = [], []
    for ids, lab in encoded:
        ids, lab = ids[:row_len], lab[:row_len]
        if len(cur) + len(ids) > row_len:
            rows.append(cur + [pad] * (row_len - len(cur)))
            labs.append(cur_l + [-100] * (row_len - len(cur_l)))
            cur, cur_l = [], []
        cur, cur_l = cur + ids, cur_l + lab
    if cur:
        rows.append(cur + [pad] * (row_len - len(cur)))
        labs.append(cur_l + [-100] * (row_len - len(cur_l)))
    return rows, labs


def _buckets(encoded: list[tuple[list[int], list[int]]], tokens: int, pad: int,
             rng: random.Random) -> list[tuple[list[list[int]], list[list[int]]]]:
    """One document per row, documents of similar length batched together (little padding),
    at most ``tokens`` positions per batch; batches in random order."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), 2000):
        chunk = sorted(order[start:start + 2000], key=lambda i: len(encoded[i][0]))
        cur: list[int] = []
        for i in chunk:
            width = max([len(encoded[j][0]) for j in cur + [i]])
            if cur and width * (len(cur) + 1) > tokens:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
    out = []
    for b in batches:
        width = max(len(encoded[i][0]) for i in b)
        out.append(([encoded[i][0] + [pad] * (width - len(encoded[i][0])) for i in b],
                    [encoded[i][1] + [-100] * (width - len(encoded[i][1])) for i in b]))
    rng.shuffle(out)
    return out


class _Stream:
    """Endless fact rows and episode rows, regenerated pass after pass from one RNG."""

    def __init__(self, world: World, enc: _Encoder, cfg: TrainConfig, rng: random.Random):
        self.world, self.enc, self.cfg, self.rng = world, enc, cfg, rng
        self.rows: list[tuple[list[int], list[int]]] = []
        self.batches: list[tuple[list[list[int]], list[list[int]]]] = []
        self.passes = 0

    def _refill(self) -> None:
        docs = fact_documents(self.world, self.rng, learn_subject=self.cfg.subject_loss, profiles=self.cfg.profiles)
        encoded = self.enc.encode_docs(docs)
        if self.cfg.packing == "bucketed":
            self.batches.extend(_buckets(encoded, self.cfg.fact_rows * self.cfg.fact_row_len, self.enc.bos, self.rng))
        else:
            rows, labs = _pack(encoded, self.cfg.fact_row_len, self.enc.bos)
            self.rows.extend(zip(rows, labs))
        self.passes += 1

    def fact_batch(self) -> tuple[list[list[int]], list[list[int]]]:
        if self.cfg.packing == "bucketed":
            if not self.batches:
                self._refill()
            return self.batches.pop()
        while len(self.rows) < self.cfg.fact_rows:
            self._refill()
        batch, self.rows = self.rows[: self.cfg.fact_rows], self.rows[self.cfg.fact_rows:]
        return [b[0] for b in batch], [b[1] for b in batch]

    def episode_batch(self) -> tuple[list[list[int]], list[list[int]]]:
        n = self.cfg.n_positions
        eps = self.enc.encode_docs([episode(self.world, self.rng) for _ in range(self.cfg.episode_rows)])
        eps = [(ids[:n], lab[:n]) for ids, lab in eps]
        width = max(len(ids) for ids, _ in eps)
        return ([ids + [self.enc.bos] * (width - len(ids)) for ids, _ in eps],
                [lab + [-100] * (width - len(lab)) for _, lab in eps])


def _state_path(out: str | Path | None) -> Path | None:
    return None if out is None else Path(out) / RESUME_FILE


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the training state atomically: a stop mid-write leaves the previous one intact."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_state(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    import torch

    from kme import ConfigError

    if not path.exists():
        raise ConfigError(f"no training state to resume from: {str(path)!r} does not exist",
                          where="kme factworld train --resume",
                          hint="start without --resume (states are written every checkpoint_every steps)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ConfigError(f"cannot read the training state {str(path)!r}: {e}", where="kme factworld train --resume",
                          hint="delete it and train from the start") from None
    saved = state.get("config", {})
    saved = {**asdict(TrainConfig()), **saved}  # a state saved before a setting existed had its default
    differ = sorted(k for k, v in asdict(cfg).items() if k not in TrainConfig.RUNTIME and saved[k] != v)
    if differ:
        shown = ", ".join(f"{k}: saved {saved[k]!r}, asked {getattr(cfg, k)!r}" for k in differ)
        raise ConfigError(f"the saved training state was made with other settings ({shown})",
                          where=str(path), hint="resume with the same --world/--seed/--steps/--set, or start anew")
    return state


def train(world: World, tokenizer: Any, cfg: TrainConfig, *, log: Callable[[str], None] = print,
          eval_fn: Callable[[Any], dict[str, float]] | None = None, eval_every: int = 0,
          out: str | Path | None = None, resume: bool = False,
          stop_after: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Train a GPT2LMHeadModel on the world; returns the model and a training record.

    With ``out`` and ``cfg.checkpoint_every``, the whole training state (weights, optimiser,
    data stream, random generators) is saved to ``out/resume-state.pt`` every that many steps;
    ``resume=True`` continues from it and gives the weights an uninterrupted run would.
    ``stop_after``: return after that many steps in total (a deliberate interruption).
    """
    import torch
    from transformers import GPT2LMHeadModel

    check_autocast(cfg.autocast)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    amp_dtype = None if cfg.autocast == "none" else getattr(torch, cfg.autocast)
    rng = random.Random(cfg.seed + 1)
    enc = _Encoder(tokenizer)
    stream = _Stream(world, enc, cfg, rng)
    model = GPT2LMHeadModel(build_model_config(cfg, len(tokenizer), tokenizer.bos_token_id)).to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    history: list[dict[str, Any]] = []
    fact_loss = ep_loss = None
    first, elapsed, resumes = 0, 0.0, 0
    state_path = _state_path(out)
    if resume:
        if state_path is None:
            raise ValueError("resume=True needs the output directory (out=)")
        st = _load_state(state_path, cfg)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        rng.setstate(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        stream.rows, stream.batches, stream.passes = st["rows"], st["batches"], st["passes"]
        first, elapsed, history = st["step"], st["seconds"], st["history"]
        fact_loss, ep_loss, resumes = st["fact_loss"], st["episode_loss"], st.get("resumes", 0) + 1
        log(json.dumps({"resumed_at_step": first, "seconds_so_far": round(elapsed, 1)}))

    def snapshot(step: int) -> dict[str, Any]:
        return {"config": asdict(cfg), "step": step, "seconds": elapsed + time.perf_counter() - t0,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(), "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                "rows": stream.rows, "batches": stream.batches, "passes": stream.passes, "history": history,
                "fact_loss": fact_loss, "episode_loss": ep_loss, "resumes": resumes}

    t0 = time.perf_counter()
    last = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    for step in range(first, last):
        is_ep = cfg.episode_every > 0 and step % cfg.episode_every == cfg.episode_every - 1
        rows, labs = stream.episode_batch() if is_ep else stream.fact_batch()
        ids = torch.tensor(rows, device=device)
        labels = torch.tensor(labs, device=device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                                 labels[:, 1:].reshape(-1), ignore_index=-100)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        lv = float(loss.detach())
        if is_ep:
            ep_loss = lv if ep_loss is None else 0.9 * ep_loss + 0.1 * lv
        else:
            fact_loss = lv if fact_loss is None else 0.95 * fact_loss + 0.05 * lv
        if (step + 1) % 100 == 0 or step == cfg.steps - 1:
            entry: dict[str, Any] = {"step": step + 1, "seconds": round(elapsed + time.perf_counter() - t0, 1),
                                     "fact_loss": round(fact_loss or 0, 4), "episode_loss": round(ep_loss or 0, 4),
                                     "passes": stream.passes}
            if eval_fn is not None and eval_every and ((step + 1) % eval_every == 0 or step == cfg.steps - 1):
                model.eval()
                entry.update(eval_fn(model))
                model.train()
            history.append(entry)
            log(json.dumps(entry))
        if state_path is not None and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 \
                and step + 1 < cfg.steps:
            _save_state(state_path, snapshot(step + 1))
    if stop_after is not None and last < cfg.steps and state_path is not None:
        _save_state(state_path, snapshot(last))
    seconds = elapsed + time.perf_counter() - t0
    model.eval()
    record = {
        "config": asdict(cfg),
        "train_seconds": round(seconds, 1),
        "steps_done": last,
        "resumes": resumes,
        "fact_passes": stream.passes,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch_threads": torch.get_num_threads(),
        "history": history,
    }
    return model, record


def save_checkpoint(model: Any, tokenizer: Any, record: dict[str, Any], out: str | Path) -> Path:
    """``save_pretrained`` the model (safetensors) and tokenizer, plus ``training.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return out


def tokenizer_texts(world: World, seed: int) -> list[str]:
    """The text the tokenizer is trained on: one pass of fact documents and some episodes."""
    rng = random.Random(seed + 2)
    texts = [doc_text(d) for d in fact_documents(world, rng)]
    texts += [doc_text(episode(world, rng)) for _ in range(200)]
    return texts
