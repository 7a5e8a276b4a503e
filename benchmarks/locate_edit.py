"""Cost and success of ROME and MEMIT by batch size: seconds per edit (target-vector
optimisation vs the closed-form solve), peak memory and edit success.

For each editor and batch size N, N requests of the ``factworld`` dataset are applied in one
``model.edit`` call (ROME applies a batch as N consecutive rank-one updates, each computed on
the model the previous ones left; MEMIT optimises all N target vectors in one batched run and
solves once per layer), timed, scored and undone. Key statistics are computed before the
timings (they are cached on disk and shared by every edit).

Columns:

- z s/edit: target-vector optimisation (ROME's v*, MEMIT's z) per edit;
- solve s/edit: everything after it (keys, residuals, linear solves, writing the deltas);
- total s/edit: the whole edit call per edit (also includes the keys ROME reads per edit);
- peak MB: peak resident memory during the edit (sampled every 2 ms) above the memory held
  before it (CUDA: peak allocated);
- success: efficacy score, the share of the N edited prompts where P(new object) > P(old
  object) after the edit (CounterFact's comparison); top-1: share where the new object's
  first token is the top prediction.

Model: the fact-world model (``kme.load("factworld")``) when its checkpoint is installed,
otherwise a random GPT-2 of the same shape (4 layers × 128) built offline, whose numbers say
nothing about edit quality.

Usage::

    python benchmarks/locate_edit.py [--editors rome,memit] [--sizes 1,10,100,1000]
                                     [--threads 2] [--model factworld] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from _common import PeakMemory


def _load(model_name: str, device: str):  # type: ignore[no-untyped-def]
    import kme
    from kme.errors import KmeError

    pm = kme.build_plugin_manager()
    try:
        spec = kme.ModelSpec(name=model_name, device=device) if device != "cpu" else model_name
        return kme.load_model(spec, pm), model_name
    except (KmeError, TypeError, ValueError):
        from kme.testing import tiny_model

        return tiny_model("gpt2", pm, n_layer=4, d=128), "random GPT-2 4x128 (no fact-world checkpoint)"


def success(model, requests) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(efficacy score, top-1 rate) of ``requests`` on the model as it is now."""
    new = model.score([r.text for r in requests], [r.target_new for r in requests])
    old = model.score([r.text for r in requests], [r.target_true for r in requests])
    eff = sum(a.logprob > b.logprob for a, b in zip(new, old)) / len(requests)
    top1 = sum(bool(a.token_correct[0]) for a in new) / len(requests)
    return eff, top1


def run(editors: list[str], sizes: list[int], model_name: str, device: str, params: dict[str, dict]) -> dict:
    import torch

    model, shown = _load(model_name, device)
    pm = model.pm
    ds = pm.datasets.get("factworld")({"split": "all"})  # 1,724 requests: enough for a batch of 1,000
    requests = list(ds.load())
    if max(sizes) > len(requests):
        raise SystemExit(f"the dataset has {len(requests)} requests, fewer than {max(sizes)}")
    rows = []
    for name in editors:
        # configured for this model: --params > the model's preset (fact world: tuned) > defaults
        editor = model.make_editor(name, {"progress": False, **params.get(name, {})})
        # warm the statistics cache and the prefix sampler outside the timings
        h = model.edit(editor, requests[:1])
        stat_layers = h.meta.get("layers") or [h.meta["layer"]]
        model.undo()
        for n in sizes:
            batch = requests[:n]
            before = success(model, batch)
            with PeakMemory(model.device.type == "cuda") as mem:
                t0 = time.perf_counter()
                h = model.edit(editor, batch)
                wall = time.perf_counter() - t0
            eff, top1 = success(model, batch)
            z = h.meta["z_seconds"]
            row = {
                "editor": name, "batch": n, "layers": stat_layers, "seconds": wall, "z_s_per_edit": z / n,
                "solve_s_per_edit": h.meta["solve_seconds"] / n, "total_s_per_edit": wall / n,
                "peak_mb": mem.peak, "peak_increase_mb": mem.increase, "efficacy": eff, "top1": top1,
                "efficacy_before": before[0],
            }
            rows.append(row)
            print(f"{name:6s} {n:5d}  z {row['z_s_per_edit']:.4f}  solve {row['solve_s_per_edit']:.4f}  "
                  f"total {row['total_s_per_edit']:.4f} s/edit  peak +{mem.increase:.0f} MB  "
                  f"success {eff:.3f} (top-1 {top1:.3f})", flush=True)
            model.undo()
    return {"model": shown, "device": str(model.device), "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "rows": rows}


def table(result: dict) -> str:
    lines = [f"model: {result['model']}  device: {result['device']}  torch threads: {result['threads']}", "",
             "| editor | batch | z s/edit | solve s/edit | total s/edit | peak MB (+) | success | top-1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['editor']} | {r['batch']} | {r['z_s_per_edit']:.4f} | {r['solve_s_per_edit']:.4f} | "
                     f"{r['total_s_per_edit']:.4f} | {r['peak_mb']:.0f} (+{r['peak_increase_mb']:.0f}) | "
                     f"{r['efficacy']:.3f} | {r['top1']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--editors", default="rome,memit")
    ap.add_argument("--sizes", default="1,10,100,1000")
    ap.add_argument("--model", default="factworld")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--params", default="{}", help='JSON: {"memit": {"layers": [0, 1]}, ...}')
    ap.add_argument("--json", dest="json_out", default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    result = run(a.editors.split(","), [int(x) for x in a.sizes.split(",")], a.model, a.device, json.loads(a.params))
    print()
    print(table(result))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
