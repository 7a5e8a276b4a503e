"""ROME and MEMIT at the published shapes of real models, with random weights.

    python benchmarks/real_shapes.py [--shapes gpt2-xl,gpt-j-6b,llama-3-8b] [--layers 2]
                                     [--dtypes float32,bfloat16] [--edits 2] [--memit-batch 4]
                                     [--stats-records 100] [--steps 5]

Builds each model from its published config (width, MLP width, heads, vocabulary) with
``--layers`` blocks instead of the published depth (this machine's memory; the per-edit cost of
ROME and MEMIT at one layer does not depend on depth beyond the forward passes), on one torch
thread, and prints per-edit seconds split into key capture / target optimisation / solve, the
statistics' tokens/s, peak RSS, and the arithmetic floor of the target optimisation: its
matmul FLOPs ÷ the FLOP/s a plain matmul reaches here.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    # published configs: GPT-2 XL (48 layers), GPT-J 6B (28), Llama-3-8B (32)
    "gpt2-xl": {"model_type": "gpt2", "n_embd": 1600, "n_head": 25, "n_inner": 6400, "vocab_size": 50257,
                "n_positions": 1024, "depth": 48},
    "gpt-j-6b": {"model_type": "gptj", "n_embd": 4096, "n_head": 16, "rotary_dim": 64, "n_inner": 16384,
                 "vocab_size": 50400, "n_positions": 2048, "depth": 28},
    "llama-3-8b": {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
                   "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 8192, "depth": 32},
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _matmul_flops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t0 = time.perf_counter()
    for _ in range(4):
        a @ b
    return 4 * 2 * 2048**3 / (time.perf_counter() - t0)


def _model(shape: str, layers: int, dtype: str, pm: Any) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from kme.edited import EditedModel
    from kme.testing import tiny_tokenizer

    cfg = dict(SHAPES[shape])
    cfg.pop("depth")
    mt = cfg.pop("model_type")
    depth_key = "n_layer" if mt in ("gpt2", "gptj") else "num_hidden_layers"
    config = AutoConfig.for_model(mt, **cfg, **{depth_key: layers})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).eval()
    return EditedModel(model, tiny_tokenizer(), pm.layouts.get(mt), pm, source=f"random-{shape}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="gpt2-xl,gpt-j-6b,llama-3-8b")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--edits", type=int, default=2)
    ap.add_argument("--memit-batch", type=int, default=4)
    ap.add_argument("--stats-records", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    import torch

    import kme

    torch.set_num_threads(1)
    pm = kme.build_plugin_manager()
    requests = list(pm.datasets.get("factworld")({"limit": max(args.edits, args.memit_batch)}).load())
    flops = _matmul_flops()
    print(f"matmul: {flops / 1e9:.1f} GFLOP/s (1 thread)\n")
    print("| shape | dtype | params (M) | editor | batch | keys s | targets s | solve s | factor | stats s (tok/s) "
          "| floor s | peak RSS MB |")
    print("|---|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for shape in args.shapes.split(","):
        for dtype in args.dtypes.split(","):
            m = _model(shape, args.layers, dtype, pm)
            n_params = sum(p.numel() for p in m.model.parameters())
            common = {"layer": 0, "stats_corpus": "factworld", "stats_samples": args.stats_records,
                      "v_num_grad_steps": args.steps, "progress": False}
            runs = [("rome", [r], {**common}) for r in requests[: args.edits]]
            runs.append(("memit", requests[: args.memit_batch], {**{k: v for k, v in common.items() if k != "layer"},
                                                                 "layers": [0]}))
            for name, reqs, params in runs:
                h = m.edit(name, reqs, params, preset="none")
                meta = h.meta
                per = meta.get("per_request") or []
                layers_info = meta.get("per_layer") or []
                if layers_info:  # MEMIT: the top-level solve_seconds covers key capture + solve of every layer
                    keys = sum(x.get("keys_seconds", 0.0) for x in layers_info)
                    solve = sum(x.get("solve_seconds", 0.0) for x in layers_info)
                else:
                    keys = meta.get("keys_seconds", sum(x.get("keys_seconds", 0) for x in per))
                    solve = meta.get("solve_seconds", 0.0)
                z = meta.get("z_seconds", 0.0)
                factor = (per[0].get("factor") if per and isinstance(per[0], dict) else None) or \
                    ",".join(str(v) for k, v in meta.items() if k == "factor") or "-"
                stats = meta.get("statistics") or {}
                tps = stats.get("tokens_per_second")
                # target optimisation floor: steps × (forward + backward ≈ 3 forwards) × 2 FLOPs per
                # parameter and token, over the tokens of the optimisation's sequences
                tokens = sum(len(m.tokenizer(r.text + " " + r.target_new)["input_ids"]) for r in reqs) * 11
                floor = args.steps * 3 * 2 * n_params * tokens / flops
                print(f"| {shape} ({args.layers} layers) | {dtype} | {n_params / 1e6:.0f} | {name} | {len(reqs)} | "
                      f"{keys:.2f} | {z:.2f} | {solve:.2f} | {factor} | {meta.get('stats_seconds', 0):.1f}"
                      f"{f' ({tps:,.0f})' if tps else ''} | {floor:.2f} | {_rss_mb():.0f} |", flush=True)
                m.undo()
            del m


if __name__ == "__main__":
    main()
