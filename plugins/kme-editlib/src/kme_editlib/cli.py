"""``kme stats ...``: compute key statistics ahead of editing, list what is cached."""

from __future__ import annotations

import json

import click

__all__ = ["stats"]


@click.group()
def stats() -> None:
    """Second-moment statistics of MLP keys (used by ROME, MEMIT, PMET, AlphaEdit)."""


@stats.command("compute")
@click.option("--model", "model_name", required=True, help="Alias (e.g. one `kme plugins` lists), local path or hub id.")
@click.option("--layer", "layers", type=int, multiple=True, required=True, help="Block index (repeatable).")
@click.option("--corpus", default="auto", show_default=True,
              help="auto (the corpus registered for the model), a registered corpus name, file:PATH or "
                   "hub:NAME[:CONFIG[:SPLIT]].")
@click.option("--samples", default=100_000, show_default=True, help="Corpus records.")
@click.option("--max-length", default=128, show_default=True, help="Tokens kept per record.")
@click.option("--dir", "cache_dir", default=None, help="Cache directory (default $KME_STATS_DIR or ~/.cache/kme/stats).")
def compute(model_name: str, layers: tuple[int, ...], corpus: str, samples: int, max_length: int,
            cache_dir: str | None) -> None:
    """Compute (or resume, or find cached) E[k kᵀ] for each --layer."""
    import kme

    from kme_editlib.stats import key_second_moments

    model = kme.load(model_name)
    got = key_second_moments(model, list(layers), corpus=corpus, samples=samples, max_length=max_length,
                             cache_dir=cache_dir)
    for layer, m in sorted(got.items()):
        click.echo(f"layer {layer}: E[k kᵀ] {tuple(m.shape)}, trace {float(m.trace()):.4g}")


@stats.command("list")
@click.option("--dir", "cache_dir", default=None, help="Cache directory.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(cache_dir: str | None, as_json: bool) -> None:
    """List cached statistics files with their keys."""
    from kme_editlib.stats import describe_cache, stats_root

    rows = describe_cache(stats_root(cache_dir))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no statistics cached under {stats_root(cache_dir)}")
    for r in rows:
        click.echo(f"{r['path']}\n  module {r.get('module')}  corpus {r.get('corpus')}  records {r.get('records')}"
                   f"  tokens {r.get('tokens')}")
