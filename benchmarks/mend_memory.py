"""MEND's training memory and speed as the model widens.

For each width a randomly initialised GPT-2 (``transformers.GPT2Config``, built locally,
nothing downloaded; ``n_layer`` blocks, ``n_embd`` = the width, 4·width MLP) is wrapped as a
kme model and MEND is trained on it for a few steps with its default networks (the last three
blocks' MLP weights, rank 1920) and the fact-world preset's batch (5 edits per step, 5
locality prompts per edit; ``--edits``/``--loc``) on
``kme.conformance.default_train_requests()``. Each width runs in its own process, so the peak
is that width's alone.

Columns:

- params: the base model's parameters;
- MEND params: the editor networks' (rank capped at 1920, as released; they grow with the
  width until the cap);
- dense grads MB: what the full gradients of the six edited weights would take (fp32) — what
  MEND never forms;
- factors MB: the rank-1 factors (``u``, ``δ`` per token of a step's edit prompts) it holds
  instead;
- peak RSS MB / increase MB: the process's peak resident memory during training (a one-step
  warm-up run, then the timed run), and its rise over the memory held before (the model
  loaded);
- s/step, CPU s/step: wall and CPU (this process, all threads) seconds per step of the timed
  run; on a shared machine the CPU column is the steadier one.

Usage::

    python benchmarks/mend_memory.py [--widths 128,256,512] [--layers 6] [--steps 3] [--edits 5] [--loc 5]
                                     [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def one(width: int, layers: int, steps: int, threads: int, edits: int, loc: int) -> dict:
    import torch
    from _common import PeakMemory
    from transformers import GPT2Config, GPT2LMHeadModel

    import kme
    import kme_mend.training as mt
    from kme.conformance import default_train_requests
    from kme.testing import tiny_tokenizer
    from kme_hyperlib.batches import EditSampler
    from kme_mend.nets import MendNetworks

    torch.set_num_threads(threads)
    pm = kme.build_plugin_manager()
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=width, n_layer=layers, n_head=max(1, width // 64), n_positions=128,
                     bos_token_id=0, eos_token_id=0)
    net = GPT2LMHeadModel(cfg).eval()
    model = kme.EditedModel(net, tok, pm.layouts.get("gpt2"), pm, source=f"random-gpt2-{width}")
    reqs = default_train_requests()
    targets = mt.targets_for(model, mt.default_layers(model))
    settings = {"edits_per_step": edits, "loc_per_edit": loc}
    step = EditSampler(reqs, loc_per_edit=loc).sample(model, edits)
    tokens = int(step.inner.attention_mask.sum())
    factors = tokens * sum(t.d_in + t.d_out for t in targets) * 4  # an upper bound: padding-free tokens
    nets = MendNetworks(mt._target_dicts(targets))
    with tempfile.TemporaryDirectory() as tmp, PeakMemory(cuda=False) as pk:
        mt.train_mend(model, reqs, f"{tmp}/warm", mt.MendTrainConfig(steps=1, **settings))
        t0, c0 = time.perf_counter(), time.process_time()
        mt.train_mend(model, reqs, f"{tmp}/run", mt.MendTrainConfig(steps=steps, **settings))
        per_step = (time.perf_counter() - t0) / steps
        cpu_per_step = (time.process_time() - c0) / steps
    dense = sum(t.d_in * t.d_out for t in targets) * 4
    return {"width": width, "params": sum(p.numel() for p in net.parameters()),
            "mend_params": sum(p.numel() for p in nets.parameters()), "dense_grads_mb": dense / 2**20,
            "factors_mb": factors / 2**20, "peak_mb": pk.peak, "increase_mb": pk.increase, "s_per_step": per_step,
            "cpu_s_per_step": cpu_per_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="128,256,512")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--edits", type=int, default=5, help="edits per step (released: 10)")
    ap.add_argument("--loc", type=int, default=5, help="locality prompts per edit (released: 10)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.layers, args.steps, args.threads, args.edits, args.loc)))
        return
    rows = []
    for w in [int(x) for x in args.widths.split(",")]:
        cmd = [sys.executable, __file__, "--one", str(w), "--layers", str(args.layers), "--steps", str(args.steps),
               "--threads", str(args.threads), "--edits", str(args.edits), "--loc", str(args.loc)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env={**os.environ, "KME_NO_PROGRESS": "1"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"MEND training, random GPT-2 with {args.layers} blocks, {args.steps} steps of {args.edits} edits x "
          f"{args.loc} locality prompts, {args.threads} thread(s)")
    print("| width | params | MEND params | dense grads MB | factors MB | peak RSS MB | increase MB | s/step "
          "| CPU s/step |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['width']} | {r['params'] / 1e6:.1f}M | {r['mend_params'] / 1e6:.1f}M | {r['dense_grads_mb']:.1f} "
              f"| {r['factors_mb']:.2f} | {r['peak_mb']:.0f} | {r['increase_mb']:.0f} | {r['s_per_step']:.2f} "
              f"| {r['cpu_s_per_step']:.2f} |")


if __name__ == "__main__":
    main()
