"""Independent edits computed together vs one at a time (the batch protocol's ``precompute``).

    python benchmarks/batch_precompute.py [--n 40] [--editor rome] [--chunk 32]

Runs the same fact-world pipeline (batch size 1) twice, ``protocol.params.precompute: 0``
(each batch alone, the code path before precompute) and ``CHUNK``, on one thread, and prints
seconds per edit of the editing phase and whether every record's metrics agree.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--editor", default="rome")
    ap.add_argument("--chunk", type=int, default=32)
    args = ap.parse_args()
    import torch

    import kme
    from kme.pipeline import parse_pipeline, run_pipeline

    torch.set_num_threads(1)
    pm = kme.build_plugin_manager()
    rows, records = [], {}
    with tempfile.TemporaryDirectory() as d:
        for chunk in (0, args.chunk):
            spec = parse_pipeline({"model": "factworld", "dataset": {"name": "factworld", "limit": args.n},
                                   "editors": [args.editor], "metrics": ["efficacy_score", "paraphrase_score"],
                                   "protocol": {"mode": "batch", "params": {"precompute": chunk}}})
            t0 = time.perf_counter()
            s = run_pipeline(spec, pm, out_dir=Path(d) / str(chunk), progress=False)
            wall = time.perf_counter() - t0
            records[chunk] = [json.loads(x)["metrics"] for x in (Path(d) / str(chunk) / "edits.jsonl").read_text()
                              .splitlines()]
            rows.append((chunk, s["timings"]["edit_s"] / args.n, wall, s["metrics"]["efficacy_score"]["value"]))
    print(f"| {args.editor}, {args.n} requests, batch size 1 | precompute | edit s/request | wall s | efficacy |")
    print("|---|---:|---:|---:|---:|")
    for chunk, per, wall, eff in rows:
        print(f"| | {chunk} | {per:.3f} | {wall:.1f} | {eff:.3f} |")
    print(f"speed-up of editing: {rows[0][1] / rows[1][1]:.2f}x; records identical: {records[0] == records[args.chunk]}")


if __name__ == "__main__":
    main()
