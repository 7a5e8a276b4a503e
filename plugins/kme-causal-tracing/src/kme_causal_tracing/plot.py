"""Heat maps of a causal trace (one panel per kind, tokens × layers, subject tokens starred)."""

from __future__ import annotations

from pathlib import Path

from kme_causal_tracing.trace import Trace

__all__ = ["plot_trace"]

TITLES = {"hidden": "hidden state (residual stream)", "mlp": "MLP output", "attn": "attention output"}


def plot_trace(trace: Trace, path: str | Path) -> Path:
    """Write the trace's heat maps as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(trace.effects)
    n_tok = len(trace.tokens)
    n_layers = len(next(iter(trace.effects.values()))[0])
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.2 + 0.35 * n_layers * len(kinds), 0.9 + 0.32 * n_tok),
                             squeeze=False)
    s0, s1 = trace.subject_range
    labels = [t + ("*" if s0 <= i <= s1 else "") for i, t in enumerate(trace.tokens)]
    for ax, kind in zip(axes[0], kinds):
        im = ax.imshow(trace.effects[kind], aspect="auto", cmap="Purples" if kind == "hidden" else
                       ("Greens" if kind == "mlp" else "Reds"), vmin=min(0.0, min(map(min, trace.effects[kind]))))
        ax.set_yticks(range(n_tok), labels if kind == kinds[0] else [""] * n_tok, fontsize=7)
        ax.set_xticks(range(n_layers), [str(i) for i in range(n_layers)], fontsize=6)
        ax.set_xlabel("layer")
        title = TITLES[kind] + ("" if kind == "hidden" else f"\n(window {trace.window})")
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle(f"{trace.prompt!r} → {trace.target!r}  p clean {trace.p_clean:.3f}, corrupted "
                 f"{trace.p_corrupted:.3f}", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
