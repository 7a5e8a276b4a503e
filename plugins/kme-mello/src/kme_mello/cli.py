"""``kme mello``: write decomposition rules, trace MeLLo on a question."""

from __future__ import annotations

import json

import click

__all__ = ["mello"]


@click.group()
def mello() -> None:
    """MeLLo: multi-hop editing by question decomposition."""


@mello.command("rules")
@click.option("--world", "world_path", required=True, type=click.Path(dir_okay=False),
              help="A fact world's world.json (relations with templates, multihop questions).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Rules JSON to write.")
def rules(world_path: str, out_path: str) -> None:
    """Write decomposition rules (question template -> hop templates) for decomposer: rules."""
    from pathlib import Path

    from kme_mello.rules import rules_from_world

    rs = rules_from_world(world_path)
    Path(out_path).write_text(json.dumps([r.model_dump() for r in rs], indent=2))
    click.echo(f"wrote {len(rs)} rules to {out_path}")
