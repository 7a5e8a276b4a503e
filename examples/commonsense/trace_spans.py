"""Causal tracing of the fact-world commonsense statements with the subject, the verb or the
object corrupted: the mean indirect effect of each layer's MLP (and hidden state) at the
corrupted span's last token and at the prompt's last token.

    python examples/commonsense/trace_spans.py [N_REQUESTS]
"""

from __future__ import annotations

import sys

import kme


def main(n: int = 20) -> None:
    model = kme.load("factworld")
    requests = list(model.pm.datasets.get("factworld-commonsense")({"limit": n}).load())
    locator = model.pm.locators.get("causal-tracing")
    print("| corrupted | p clean | p corrupted | kind | at span's last token (layers 0..) | at last token |")
    print("| --- | --- | --- | --- | --- | --- |")
    for span in ("subject", "verb", "object"):
        where = locator({"corrupt": span, "samples": 10, "kinds": ["hidden", "mlp"], "max_requests": n,
                         "plot": False}).locate(model, requests)
        s = where.scores
        for kind in ("mlp", "hidden"):
            eff = s["mean_indirect_effect"][kind]
            fmt = lambda xs: " ".join(f"{x:.3f}" for x in xs)  # noqa: E731
            print(f"| {span} | {s['p_clean_mean']:.3f} | {s['p_corrupted_mean']:.3f} | {kind} | "
                  f"{fmt(eff['subject_last'])} | {fmt(eff['last'])} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
