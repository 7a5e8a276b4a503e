"""Evaluation throughput: prompts scored per second and peak memory of kme's metrics over the
probes of 1,000 edit requests.

Model: the fact-world model (``kme.load("factworld")``) when its checkpoint is installed,
otherwise a random GPT-2 built offline (``kme.testing.tiny_model``; ``--random-shape 4x128``
matches the fact-world model's layers and width). Requests: the ``factworld``
dataset (eval split, then train split, until there are enough), otherwise synthetic ones.
Each metric runs once on the unedited model (its ``prepare`` first, untimed, as the runner
does); the table reports, per metric:

- probes: prompts the metric judges (a CounterFact probe scores two continuations);
- sequences: rows sent through the model (continuations scored, or prompts generated from);
- prompts/s: probes per second of wall time;
- peak MB: peak resident memory during the call (CPU, sampled every 2 ms) or peak CUDA
  memory allocated (GPU), and the increase over the memory held before the call.

Usage::

    python benchmarks/eval_throughput.py [--n-edits 1000] [--device cpu|cuda] [--batch-size 64]
                                         [--threads N] [--model NAME] [--random-shape 4x128]
                                         [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

from _common import PeakMemory

DEFAULT_METRICS = [
    ("accuracy", {}), ("accuracy", {"scoring": "token"}), ("accuracy", {"scoring": "exact"}),
    ("generality", {}), ("token_accuracy", {}), ("efficacy_score", {}), ("paraphrase_score", {}),
    ("neighborhood_score", {}), ("locality", {}), ("locality", {"mode": "top1"}), ("portability", {}),
    ("multihop_accuracy", {}), ("fluency", {"max_new_tokens": 32}),
]


def load_model(name: str, device: str, pm: Any, shape: str) -> tuple[Any, str]:
    import kme
    from kme.errors import KmeError

    try:
        return kme.load_model(kme.ModelSpec(name=name, device=device), pm), name
    except KmeError as e:
        from kme.testing import tiny_model

        layers, width = (int(x) for x in shape.lower().split("x"))
        print(f"# {name!r} is not available ({e.message.splitlines()[0]}); using a random GPT-2 {shape}")
        m = tiny_model("gpt2", pm, n_layer=layers, d=width)
        m.model.to(device)
        return m, f"random gpt2 ({layers} layers x {width}, vocab {len(m.tokenizer)})"


def load_requests(n: int, pm: Any) -> tuple[list[Any], str]:
    from kme.errors import KmeError

    reqs: list[Any] = []
    try:
        ds = pm.datasets.get("factworld")
        for split in ("eval", "train"):
            reqs += list(ds({"split": split}).load())
        if reqs:
            out, k = [], 0
            while len(out) < n:  # repeat with fresh case ids if the world is smaller than n
                r = reqs[len(out) % len(reqs)]
                out.append(r.model_copy(update={"case_id": f"{r.case_id}#{k}" if len(out) >= len(reqs) else r.case_id}))
                k += len(out) % len(reqs) == 0
            return out, f"factworld ({len(reqs)} distinct requests)"
    except KmeError as e:
        print(f"# factworld dataset unavailable ({e.message.splitlines()[0]}); using synthetic requests")
    import kme

    subjects = ["France", "Italy", "Alice Smith", "Bob Jones", "Toko Yasuda", "Danielle Darrieux"]
    objects = [" Paris", " Rome", " London", " French", " Acme", " piano"]
    out = []
    for i in range(n):
        s, o = subjects[i % len(subjects)], objects[(i // 6) % len(objects)]
        out.append(kme.EditRequest(
            case_id=i, prompt="The capital of {} is", subject=s, target_new=o, target_true=objects[i % 6 - 1],
            paraphrase_prompts=[f"{s} has its capital in", f"Where is the capital of {s}? It is in"],
            neighborhood=[kme.Probe(prompt=f"The capital of {t} is", target=" Paris") for t in subjects[:5]],
            portability=[kme.PortabilityQuestion(prompt=f"The language spoken in the capital of {s} is",
                                                 target_new=" French", kind="multihop")],
            generation_prompts=[f"{s} is"]))
    return out, "synthetic"


def count_work(name: str, requests: list[Any], params: dict[str, Any]) -> tuple[int, int]:
    """(probes judged, sequences through the model) for one metric over ``requests``."""
    per = {
        "accuracy": lambda r: (1, len(r.choices) if r.choices else 1),
        "token_accuracy": lambda r: (1, 1),
        "generality": lambda r: (len(r.paraphrase_prompts), len(r.paraphrase_prompts)),
        "efficacy_score": lambda r: (1, 2) if r.target_true else (0, 0),
        "paraphrase_score": lambda r: ((len(r.paraphrase_prompts), 2 * len(r.paraphrase_prompts))
                                       if r.target_true else (0, 0)),
        "neighborhood_score": lambda r: (len(r.neighborhood), 2 * len(r.neighborhood)),
        "locality": lambda r: (len(r.neighborhood), len(r.neighborhood)),
        "portability": lambda r: (len(r.portability), sum(1 + len(q.aliases) for q in r.portability)),
        "multihop_accuracy": lambda r: (sum(q.kind == "multihop" for q in r.portability),
                                        sum(q.kind == "multihop" for q in r.portability)),
        "fluency": lambda r: (len(r.generation_prompts), len(r.generation_prompts)),
    }[name]
    probes = sequences = 0
    for r in requests:
        p, s = per(r)
        probes, sequences = probes + p, sequences + s
    return probes, sequences


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-edits", type=int, default=1000)
    ap.add_argument("--model", default="factworld")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--random-shape", default="4x32",
                    help="LAYERSxWIDTH of the random GPT-2 used when --model cannot be loaded")
    ap.add_argument("--batch-size", type=int, default=64, help="evaluation batch size (protocol.eval_batch_size)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--unbatched-sample", type=int, default=100,
                    help="also time accuracy with batch size 1 on this many requests (0: skip)")
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = ap.parse_args()

    import torch

    import kme
    from kme import EvalContext

    if args.threads:
        torch.set_num_threads(args.threads)
    pm = kme.build_plugin_manager()
    model, model_label = load_model(args.model, args.device, pm, args.random_shape)
    requests, data_label = load_requests(args.n_edits, pm)
    n_params = sum(p.numel() for p in model.model.parameters())
    device_label = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"# model: {model_label} ({n_params / 1e6:.2f} M params) on {device_label}")
    print(f"# requests: {len(requests)} from {data_label}; eval batch size {args.batch_size}; "
          f"torch {torch.__version__}")

    runs = [(n, p, requests, args.batch_size) for n, p in DEFAULT_METRICS]
    if args.unbatched_sample:
        runs.insert(1, ("accuracy", {}, requests[: args.unbatched_sample], 1))
    rows = []
    print("\n| metric | scoring | requests | probes | sequences | seconds | prompts/s | peak MB | +MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, params, reqs, bs in runs:
        metric = pm.metrics.get(name)(params)
        ctx = EvalContext(phase="baseline", batch_size=bs)
        metric.prepare(model, reqs, ctx)
        ctx.phase = "batch"
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        with PeakMemory(args.device.startswith("cuda"), synchronize=True) as mem:
            t0 = time.perf_counter()
            values = metric.compute(model, reqs, ctx)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        probes, seqs = count_work(name, reqs, params)
        label = name + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
        label += " [batch size 1]" if bs == 1 else ""
        row = {"metric": label, "scoring": type(metric).scoring, "requests": len(reqs), "probes": probes,
               "sequences": seqs, "seconds": dt, "prompts_per_s": probes / dt if dt else float("inf"),
               "peak_mb": mem.peak, "delta_mb": mem.increase,
               "scored": sum(v is not None for v in values)}
        rows.append(row)
        print(f"| {label} | {row['scoring']} | {len(reqs)} | {probes} | {seqs} | {dt:.2f} | "
              f"{row['prompts_per_s']:.0f} | {mem.peak:.0f} | {row['delta_mb']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model_label, "device": device_label, "requests": len(requests), "data": data_label,
                       "batch_size": args.batch_size, "rows": rows, "pid": os.getpid()}, f, indent=2)


if __name__ == "__main__":
    main()
