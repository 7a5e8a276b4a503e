"""Sizing a fact-world model: does a candidate shape show the locate-and-edit regime?

For each checkpoint (trained with ``kme factworld train --world deep --set n_layer=...``):

- recall on trained and held-out phrasings (a sample of each group);
- causal tracing (ROME §2) on known facts of the ``eval`` split: the mean indirect effect of
  restoring one layer's MLP output at the subject's last token and at the prompt's last token;
- MEMIT, one batch of N edits with distinct subjects (N = 100 and 1,000 by default):
  efficacy / paraphrase / neighbourhood scores (CounterFact's comparisons), at a window of
  layers that ends at the traced peak.

Prints a markdown table (one row per checkpoint) and, with ``--json``, writes every number.

Usage::

    python benchmarks/factworld_sizing.py CHECKPOINT [CHECKPOINT ...] [--sizes 100,1000]
        [--trace 40] [--window 3] [--layers 2,3,4] [--stats-samples 5000] [--json out.json]
        [--fact-token last --mom2-update-weight 15 --clamp 10]    # the deep model's presets
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def _scores(model: Any, requests: list[Any]) -> dict[str, float]:
    """CounterFact's efficacy, paraphrase and neighbourhood scores on the model as it is now."""
    def better(prompts: list[str], a: list[str], b: list[str]) -> list[bool]:
        sa, sb = model.score(prompts, a, batch_size=256), model.score(prompts, b, batch_size=256)
        return [x.logprob > y.logprob for x, y in zip(sa, sb)]

    eff = better([r.text for r in requests], [r.target_new for r in requests], [r.target_true for r in requests])
    pp = [(p, r) for r in requests for p in r.paraphrase_prompts]
    para = better([p for p, _ in pp], [r.target_new for _, r in pp], [r.target_true for _, r in pp])
    nb = [(n, r) for r in requests for n in r.neighborhood]
    neigh = better([n.prompt for n, _ in nb], [n.target for n, _ in nb], [r.target_new for _, r in nb])
    mean = lambda xs: round(sum(xs) / max(1, len(xs)), 3)  # noqa: E731
    return {"efficacy": mean(eff), "paraphrase": mean(para), "neighbourhood": mean(neigh)}


def measure(path: str, sizes: list[int], n_trace: int, window: int, layers: list[int] | None,
            stats_samples: int, recall_sample: int, fact_token: str = "subject_last",
            mom2_update_weight: float | None = None, clamp: float = 4.0) -> dict[str, Any]:
    import kme
    from kme_factworld.cli import check_model
    from kme_factworld.text import corpus
    from kme_factworld.world import load_world

    pm = kme.build_plugin_manager()
    model = kme.load_model(path, pm)
    world = load_world(Path(path) / "world.json")
    cfg = model.model.config
    row: dict[str, Any] = {"checkpoint": path, "shape": f"{cfg.n_layer} x {cfg.n_embd}",
                           "d_ff": cfg.n_inner or 4 * cfg.n_embd,
                           "parameters_m": round(sum(p.numel() for p in model.model.parameters()) / 1e6, 2)}
    rec = json.loads((Path(path) / "training.json").read_text())
    row["train_steps"], row["train_seconds"] = rec["config"]["steps"], rec["train_seconds"]
    q = check_model(path, sample=recall_sample, context=False)
    row["recall_train"], row["recall_heldout"] = q["recall_train"], q["recall_heldout_paraphrase"]

    ds = pm.datasets.get("factworld")({"world": str(Path(path) / "world.json"), "distinct_subjects": True})
    requests = list(ds.load())
    # trace facts the model knows
    known = []
    for r in requests:
        if len(known) == n_trace:
            break
        if model.score([r.text], [r.target_true])[0].all_correct:
            known.append(r)
    t0 = time.perf_counter()
    loc = pm.locators.get("causal-tracing")({"max_requests": n_trace, "kinds": ["mlp", "hidden"], "window": 1}).locate(model, known)
    effect = loc.scores["mean_indirect_effect"]["mlp"]["subject_last"]
    row["trace_mlp_subject_last"] = [round(x, 3) for x in effect]
    row["trace_hidden_subject_last"] = [round(x, 3) for x in loc.scores["mean_indirect_effect"]["hidden"]["subject_last"]]
    row["trace_mlp_last"] = [round(x, 3) for x in loc.scores["mean_indirect_effect"]["mlp"]["last"]]
    peak_at = effect if fact_token != "last" else loc.scores["mean_indirect_effect"]["mlp"]["last"]
    row["trace_peak_layer"] = int(max(range(len(peak_at)), key=lambda i: peak_at[i]))
    row["trace_seconds"] = round(time.perf_counter() - t0, 1)
    if layers is None:
        peak = row["trace_peak_layer"]
        layers = list(range(max(0, peak - window + 1), peak + 1))
    row["memit_layers"] = layers

    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = Path(tmp) / "corpus.txt"
        corpus_file.write_text("\n".join(corpus(world)) + "\n", encoding="utf-8")
        params = {"layers": layers, "v_num_grad_steps": 50, "v_lr": 1.0, "clamp_norm_factor": clamp,
                  "fact_token": fact_token, "mom2_update_weight": mom2_update_weight,
                  "stats_corpus": f"file:{corpus_file}", "stats_samples": stats_samples, "stats_dir": tmp,
                  "progress": False}
        editor = model.make_editor("memit", params)
        for n in sizes:
            if n > len(requests):
                row[f"memit_{n}"] = None
                continue
            batch = requests[:n]
            t0 = time.perf_counter()
            model.edit(editor, batch)
            seconds = time.perf_counter() - t0
            row[f"memit_{n}"] = {**_scores(model, batch), "seconds": round(seconds, 1)}
            model.undo()
    return row


def _fmt(s: dict[str, Any] | None) -> str:
    return "—" if not s else f"{s['efficacy']:.3f} / {s['paraphrase']:.3f} / {s['neighbourhood']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--trace", type=int, default=40, help="known facts to trace")
    ap.add_argument("--window", type=int, default=3, help="MEMIT layers: this many, ending at the traced peak")
    ap.add_argument("--layers", default=None, help="MEMIT layers (overrides --window)")
    ap.add_argument("--stats-samples", type=int, default=5000)
    ap.add_argument("--recall-sample", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fact-token", default="subject_last", choices=["subject_last", "subject_first", "last"],
                    help="MEMIT's fact token; with 'last' the window ends at the last token's traced peak")
    ap.add_argument("--mom2-update-weight", type=float, default=None, help="MEMIT's λ (default: the width rule)")
    ap.add_argument("--clamp", type=float, default=4.0, help="clamp_norm_factor")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    sizes = [int(x) for x in a.sizes.split(",")]
    layers = [int(x) for x in a.layers.split(",")] if a.layers else None
    rows = [measure(p, sizes, a.trace, a.window, layers, a.stats_samples, a.recall_sample, a.fact_token,
                    a.mom2_update_weight, a.clamp) for p in a.checkpoints]
    print("| shape | d_ff | params (M) | steps | train s | recall train / held-out | MLP effect at subject's last "
          "token, by layer | at the last token | MEMIT layers | " + " | ".join(f"MEMIT {n}: eff / para / neigh" for n in sizes) + " |")
    print("|---|---:|---:|---:|---:|---|---|---|---|" + "---|" * len(sizes))
    for r in rows:
        print(f"| {r['shape']} | {r['d_ff']} | {r['parameters_m']} | {r['train_steps']} | {r['train_seconds']:.0f} | "
              f"{r['recall_train']:.3f} / {r['recall_heldout']:.3f} | "
              f"{' '.join(f'{x:.3f}' for x in r['trace_mlp_subject_last'])} | "
              f"{' '.join(f'{x:.3f}' for x in r['trace_mlp_last'])} | {r['memit_layers']} | "
              + " | ".join(_fmt(r[f"memit_{n}"]) for n in sizes) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
