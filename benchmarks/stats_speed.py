"""Key statistics vs a plain forward pass over the same corpus records.

    python benchmarks/stats_speed.py [--records 2000] [--layers 1,2] [--threads 1]
                                              [--batch-size 32] [--old PATH] [--device cpu]

Times, on the fact-world model (random 4x128 GPT-2 without its checkpoint) and its
``factworld`` corpus:

- ``forward``: the records tokenised in one call, in corpus order, batched ``batch_size`` at a
  time and run through the model (logits and all) -- what a plain evaluation pass costs;
- ``stats (new)``: :func:`kme_editlib.stats.key_second_moments` over the same records and
  ``layers``, cache disabled (a fresh directory);
- ``stats (old)``: the same with another version of ``stats.py`` (``--old``, e.g. written by
  ``git show <rev>:plugins/kme-editlib/src/kme_editlib/stats.py > old_stats.py``), if given.

Prints tokens/s of each and the ratio of each statistics time to the forward time; the
``max |C_new - C_old| / max |C_old|`` of the two versions when both ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--layers", default="1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--old", default=None, help="path of an older stats.py to compare against")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    import kme
    from kme import pad_sequences
    from kme_editlib import stats as new_stats

    torch.set_num_threads(args.threads)
    pm = kme.build_plugin_manager()
    try:
        spec = kme.ModelSpec(name="factworld", device=args.device) if args.device != "cpu" else "factworld"
        model = kme.load_model(spec, pm)
    except Exception:  # no fact-world checkpoint: a random model of its shape
        from kme.testing import tiny_model

        model = tiny_model("gpt2", pm, n_layer=4, d=128)
    layers = [int(x) for x in args.layers.split(",")]
    texts = list(itertools.islice(pm.corpora.get("factworld").records(), args.records))
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)

    def forward() -> tuple[float, int]:
        t0 = time.perf_counter()
        enc = model.tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]
        n = 0
        with torch.no_grad():
            for s in range(0, len(enc), args.batch_size):
                ids, mask = pad_sequences(enc[s:s + args.batch_size], model.tokenizer.pad_token_id, model.device)
                model.model(input_ids=ids, attention_mask=mask, use_cache=False)
                n += int(mask.sum())
        sync()
        return time.perf_counter() - t0, n

    def stats(mod) -> tuple[float, int, dict]:  # type: ignore[no-untyped-def]
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            info: dict = {}
            kw = {"info": info} if mod is new_stats else {}
            out = mod.key_second_moments(model, layers, corpus="factworld", samples=args.records,
                                         max_length=args.max_length, cache_dir=d, batch_size=args.batch_size,
                                         progress=False, **kw)
            sync()
            return time.perf_counter() - t0, int(info.get("tokens", 0)), out

    def best(fn):  # type: ignore[no-untyped-def]
        runs = [fn() for _ in range(args.repeat)]
        return min(runs, key=lambda r: r[0])

    def length_sorted():  # type: ignore[no-untyped-def]
        new_stats.PAD_AS_CORPUS_BATCHES = False
        try:
            return stats(new_stats)
        finally:
            new_stats.PAD_AS_CORPUS_BATCHES = True

    runs: dict[str, list] = {"forward (logits)": [], f"stats new, layers {layers}": [],
                             f"stats new length-sorted": []}
    fns = [forward, lambda: stats(new_stats), length_sorted]
    old = None
    if args.old:
        spec_ = importlib.util.spec_from_file_location("kme_editlib._old_stats", args.old)
        old = importlib.util.module_from_spec(spec_)  # type: ignore[arg-type]
        sys.modules[spec_.name] = old  # type: ignore[union-attr]
        spec_.loader.exec_module(old)  # type: ignore[union-attr]
        runs[f"stats old, layers {layers}"] = []
        fns.append(lambda: stats(old))
    for _ in range(args.repeat):  # interleaved, best of each
        for (name, acc), fn in zip(runs.items(), fns):
            acc.append(fn())
    res = {name: min(acc, key=lambda r: r[0]) for name, acc in runs.items()}
    fwd_t, n_tok = res["forward (logits)"]
    rows = [(name, r[0]) for name, r in res.items()]
    c_new = res[f"stats new, layers {layers}"][2]
    c_old = res[f"stats old, layers {layers}"][2] if old is not None else None
    print(f"{args.records} factworld records, {n_tok} tokens, batch {args.batch_size}, {args.threads} thread(s), "
          f"device {model.device}")
    print(f"{'pass':<32} {'seconds':>8} {'tokens/s':>10} {'x forward':>10}")
    for name, t in rows:
        print(f"{name:<32} {t:8.3f} {n_tok / t:10.0f} {t / fwd_t:10.2f}")
    if c_old is not None:
        for layer in layers:
            a, b = c_new[layer].double(), c_old[layer].double()
            print(f"layer {layer}: max|C_new - C_old| / max|C_old| = {float((a - b).abs().max() / b.abs().max()):.2e}")


if __name__ == "__main__":
    main()
